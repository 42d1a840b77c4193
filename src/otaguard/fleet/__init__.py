"""Pure fleet rules (server side, no I/O, no clock reads: time is a parameter).

Device status from reports (``status``), deployment compatibility (``compatibility``), and the
rollout policy: phases and device choice (``phases``), the rollout decision (``rollout``,
``progress``), failure-rate and health tests (``stats``, ``health``), pacing and maintenance
windows (``pacing``, ``windows``), anomaly rules and alerts (``anomaly``, ``alerts``,
``integrity``), plan encoding (``plan_codec``), saved dynamic group filters (``groups``).
Imports only ``errors`` and the standard library (``groups`` also ``packaging``, for PEP 440
version order); no I/O (checked by tests/architecture).
"""
