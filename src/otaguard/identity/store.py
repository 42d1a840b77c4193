"""Persistence of identities and access, on the server's ``Store``: one object the server
and the CLI hold, handing each method to the module that owns its concern:

- ``operator_store.py``: operators, roles, API tokens;
- ``login_store.py``: password login with lock-out per (account, address);
- ``audit_store.py``: the hash-chained audit log;
- ``device_ca_store.py``: enrollment tokens, issued device certificates, the CRL;
- ``approval_store.py``: production groups and deployment approvals (two-person rule).

Decisions come from the pure modules (``rbac``, ``passwords``, ``audit``); these only read and
write rows, one transaction per method. This module also re-exports the names callers import
from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from otaguard.identity import audit as chain
from otaguard.identity.approval_store import Approvals
from otaguard.identity.audit_store import AUDIT_LOCK, AuditLog
from otaguard.identity.device_ca_store import (
    CRL_LOCK,
    CRL_ROW,
    ENROLLMENT_TOKEN_TTL,
    CertificateView,
    CrlState,
    DeviceCaRecords,
    EnrollmentGrant,
    ImportedCertificate,
    ImportedToken,
    SignCrl,
)
from otaguard.identity.login_store import Logins
from otaguard.identity.operator_store import (
    DEFAULT_TOKEN_TTL,
    LOGIN_TOKEN_TTL,
    MAX_TOKEN_TTL,
    TOKEN_PREFIX,
    IssuedToken,
    Operators,
    TokenView,
    UserView,
)
from otaguard.identity.passwords import LockoutPolicy
from otaguard.identity.rbac import Principal
from otaguard.store.credentials import token_fingerprint
from otaguard.store.engine import Database

__all__ = [
    "AUDIT_LOCK",
    "CRL_LOCK",
    "CRL_ROW",
    "DEFAULT_TOKEN_TTL",
    "ENROLLMENT_TOKEN_TTL",
    "LOGIN_TOKEN_TTL",
    "MAX_TOKEN_TTL",
    "TOKEN_PREFIX",
    "Approvals",
    "AuditLog",
    "CertificateView",
    "CrlState",
    "DeviceCaRecords",
    "EnrollmentGrant",
    "IdentityStore",
    "ImportedCertificate",
    "ImportedToken",
    "IssuedToken",
    "Operators",
    "SignCrl",
    "TokenView",
    "UserView",
    "token_fingerprint",
]


class IdentityStore:
    """Identities and access on ``store``: each method below is the same-named method of
    ``operators``, ``audit_log``, ``device_ca`` or ``approvals``."""

    def __init__(
        self,
        store: Database,
        lockout: LockoutPolicy | None = None,
        *,
        audit_key: bytes | None = None,
    ) -> None:
        self.store = store
        self.lockout = lockout or LockoutPolicy()
        self.operators = Operators(store, self.lockout)
        self.audit_log = AuditLog(store, audit_key)
        self.device_ca = DeviceCaRecords(store)
        self.approvals = Approvals(store, self.operators.duty_facts)
        self.logins = Logins(store, self.lockout)

    # -- users (operator_store.py) ----------------------------------------------------------
    def add_user(
        self, name: str, roles: list[str], password: str | None = None, *, by: str | None = None
    ) -> UserView:
        return self.operators.add_user(name, roles, password, by=by)

    def set_roles(self, name: str, roles: list[str], *, by: str | None = None) -> UserView:
        return self.operators.set_roles(name, roles, by=by)

    def set_password(self, name: str, password: str, *, by: str | None = None) -> UserView:
        """``Operators.set_password``: an administrative reset (revokes the account's tokens,
        no approvals until its user sets their own password)."""
        return self.operators.set_password(name, password, by=by)

    def change_own_password(
        self, name: str, current: str, new: str, *, client: str = "unknown"
    ) -> None:
        """``Logins.change_own_password``: raises ``AuthError`` when refused."""
        self.logins.change_own_password(name, current, new, client=client)

    def get_user(self, name: str) -> UserView:
        return self.operators.get_user(name)

    def list_users(self) -> list[UserView]:
        return self.operators.list_users()

    # -- login (login_store.py) and tokens (operator_store.py) ------------------------------
    def login(
        self,
        name: str,
        password: str,
        *,
        client: str = "unknown",
        scopes: list[str] | None = None,
        ttl: dt.timedelta = LOGIN_TOKEN_TTL,
        now: dt.datetime | None = None,
    ) -> IssuedToken:
        """``Logins.login``: raises ``AuthError`` (refused, counted towards the lock-out of
        (``name``, ``client``)) or ``ConfigError`` (unknown scope)."""
        return self.logins.login(name, password, client=client, scopes=scopes, ttl=ttl, now=now)

    def create_token(
        self,
        user: str,
        *,
        scopes: list[str],
        ttl: dt.timedelta = DEFAULT_TOKEN_TTL,
        label: str = "",
    ) -> IssuedToken:
        return self.operators.create_token(user, scopes=scopes, ttl=ttl, label=label)

    def authenticate(self, token: str, *, now: dt.datetime | None = None) -> Principal:
        """``Operators.authenticate``: raises ``AuthError`` when the token is refused."""
        return self.operators.authenticate(token, now=now)

    def list_tokens(self, user: str | None = None) -> list[TokenView]:
        return self.operators.list_tokens(user)

    def revoke_token(self, token_id: str, *, user: str | None = None) -> None:
        self.operators.revoke_token(token_id, user=user)

    # -- audit log (audit_store.py) ---------------------------------------------------------
    def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> chain.AuditEntry:
        return self.audit_log.audit(
            actor=actor, action=action, target=target, outcome=outcome, detail=detail
        )

    def audit_entries(self, *, batch: int = 1000) -> Iterator[chain.AuditEntry]:
        return self.audit_log.audit_entries(batch=batch)

    # -- device CA state (device_ca_store.py) -----------------------------------------------
    def create_enrollment_token(
        self,
        device_id: str,
        hardware: str,
        *,
        tags: list[str] | None = None,
        created_by: str,
        ttl: dt.timedelta = ENROLLMENT_TOKEN_TTL,
    ) -> str:
        return self.device_ca.create_enrollment_token(
            device_id, hardware, tags=tags, created_by=created_by, ttl=ttl
        )

    def consume_enrollment_token(self, token: str, device_id: str) -> EnrollmentGrant:
        """``DeviceCaRecords.consume_enrollment_token``: raises ``AuthError`` when refused."""
        return self.device_ca.consume_enrollment_token(token, device_id)

    def record_certificate(
        self, *, serial: int, device_id: str, hardware: str, not_after: dt.datetime, pem: str
    ) -> None:
        self.device_ca.record_certificate(
            serial=serial, device_id=device_id, hardware=hardware, not_after=not_after, pem=pem
        )

    def certificates(self, device_id: str) -> list[CertificateView]:
        return self.device_ca.certificates(device_id)

    def crl_state(self, known: int | None = None) -> CrlState | None:
        return self.device_ca.crl_state(known)

    def ensure_crl(self, floor: int, sign: SignCrl, *, force: bool = False) -> CrlState:
        return self.device_ca.ensure_crl(floor, sign, force=force)

    def resign_crl(self, sign: SignCrl) -> CrlState:
        return self.device_ca.resign_crl(sign)

    def revoke_certificates(
        self,
        *,
        serial: int | None = None,
        device_id: str | None = None,
        reason: str = "unspecified",
        sign: SignCrl,
    ) -> tuple[list[int], CrlState]:
        return self.device_ca.revoke_certificates(
            serial=serial, device_id=device_id, reason=reason, sign=sign
        )

    def import_ca_state(
        self,
        certificates: list[ImportedCertificate],
        tokens: list[ImportedToken],
    ) -> tuple[int, int]:
        return self.device_ca.import_ca_state(certificates, tokens)

    # -- production groups and approvals (approval_store.py) --------------------------------
    def set_production(self, tag: str, production: bool, *, by: str) -> None:
        self.approvals.set_production(tag, production, by=by)

    def production_groups(self) -> list[str]:
        return self.approvals.production_groups()

    def approve(self, deployment_id: int, approver: Principal) -> None:
        """``Approvals.approve``: raises ``NotFoundError``, ``ForbiddenError`` (the two-person
        rule refuses this approver) or ``ConflictError`` (not awaiting approval)."""
        self.approvals.approve(deployment_id, approver)

    def approval(self, deployment_id: int) -> str | None:
        return self.approvals.approval(deployment_id)
