"""The signed image repository (TUF).

Maker side (offline workstation): ``maker`` (the repository directory and signing),
``maker_delegation`` (delegating paths and hashed bins), ``detached`` (offline signatures),
``rotation`` (key changes), ``images`` and ``sbom`` (what a release's custom metadata holds).
Server side: ``online`` (snapshot and timestamp with the online keys) and ``publish`` (the rules
a publication must pass, over small interfaces to the blob store and release catalogue).
Shared and pure: ``roles``, ``delegation`` (walking the delegation tree). Imports only ``errors``
and python-tuf/securesystemslib: no server, store, network or device code.
"""
