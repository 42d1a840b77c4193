"""The fleet simulator: many simulated A/B devices, each running the real agent against a real
server (device side; used by the demo and the tests). Imports ``agent``, ``device``, ``net`` and
``crypto``; never the server side.
"""
