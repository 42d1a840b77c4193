"""Identities and access: operators and roles, device certificates, the audit log.

Mostly server side: ``store`` (the ``IdentityStore`` facade over ``operator_store``,
``audit_store``, ``device_ca_store`` and ``approval_store``, which read and write the rows
on ``otaguard.store``), ``authority`` (the device CA's key files), and the pure rules they
apply (``rbac``, ``passwords``, ``audit``, ``ratelimit``, ``ca``: no I/O). Device side:
``device_keys`` and ``enroll`` (a device's own key, CSR and enrollment call), which must not
import the server-side modules.
"""
