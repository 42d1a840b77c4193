"""Tables of identities and access: operators, their API tokens, the audit log, device
enrollment tokens and certificates, the device CRL, production groups and deployment
approvals.

On the same ``Base`` (``store/base.py``) as ``store/models.py``; ``store/schema.py`` gathers both
into one metadata; created by migrations 0004 and 0005 (``device_crl``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from otaguard.store.base import Base, UtcDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # argon2id hash string; None: the user cannot log in with a password (tokens only)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # Separation of duties (docs/SECURITY.md): operators who created this account, set its
    # roles or its password; operators who reset a password it had; and whether its current
    # password was set by someone else (it cannot approve until it sets its own).
    managed_by: Mapped[list[str]] = mapped_column(JSON, default=list)
    reset_by: Mapped[list[str]] = mapped_column(JSON, default=list)
    password_set_by_other: Mapped[bool] = mapped_column(Boolean, default=False)


class LoginThrottle(Base):
    """Failed logins of one account from one client address: the lock-out is per (account,
    address), so an attacker's address cannot lock a user out of another address."""

    __tablename__ = "login_throttle"

    user_name: Mapped[str] = mapped_column(
        ForeignKey("users.name", ondelete="CASCADE"), primary_key=True
    )
    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    last_success: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class OperatorToken(Base):
    """A scoped, expiring API token (only its SHA-256 is stored: tokens are 256-bit random)."""

    __tablename__ = "operator_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_name: Mapped[str] = mapped_column(ForeignKey("users.name"), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    label: Mapped[str] = mapped_column(String(128), default="")
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class AuditRecord(Base):
    """One entry of the hash-chained audit log (``identity/audit.py``); rows are only added."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(100), index=True)
    target: Mapped[str] = mapped_column(String(300))
    outcome: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # HMAC-SHA256 of ``hash`` under the server's audit key (outside the database)
    mac: Mapped[str | None] = mapped_column(String(64), nullable=True)


class EnrollmentToken(Base):
    """A one-time factory token: lets one device (id, hardware) enroll once, before expiry."""

    __tablename__ = "enrollment_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    hardware: Mapped[str] = mapped_column(String(64))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DeviceCertificate(Base):
    """A certificate the device CA issued; ``revoked_at`` set: refused from the next request."""

    __tablename__ = "device_certificates"

    serial: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex
    device_id: Mapped[str] = mapped_column(String(128), index=True)
    hardware: Mapped[str] = mapped_column(String(64))
    not_after: Mapped[dt.datetime] = mapped_column(UtcDateTime())
    pem: Mapped[str] = mapped_column(Text)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    revoked_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DeviceCrl(Base):
    """The device CA's current CRL (one row, ``id`` 1): its number orders every re-signing by
    any server process, and is what processes poll to notice a revocation made elsewhere."""

    __tablename__ = "device_crl"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    number: Mapped[int] = mapped_column(Integer)
    pem: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class ProductionGroup(Base):
    """A device tag marked production: deployments reaching it need a second person's approval."""

    __tablename__ = "production_groups"

    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DeploymentApproval(Base):
    __tablename__ = "deployment_approvals"

    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id"), primary_key=True)
    approved_by: Mapped[str] = mapped_column(String(200))
    approved_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
