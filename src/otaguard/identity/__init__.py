"""Identities and access: operators and roles, device certificates, the audit log."""
