"""Request and response bodies of the identity and access routes and of device enrollment
and certificates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from otaguard.server.schemas import DEVICE_ID

NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
#: largest certificate signing request (PEM) a device may send
MAX_CSR = 16 << 10


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(Strict):
    username: str = Field(pattern=NAME)
    password: str = Field(min_length=1, max_length=1024)
    scopes: list[str] | None = Field(default=None, max_length=64)


class TokenIn(Strict):
    scopes: list[str] = Field(default_factory=lambda: ["*"], min_length=1, max_length=64)
    ttl_seconds: int = Field(default=30 * 86400, ge=1, le=365 * 86400)
    label: str = Field(default="", max_length=128)


class TokenOut(BaseModel):
    id: str
    token: str
    expires_at: dt.datetime


class TokenInfo(BaseModel):
    id: str
    user: str
    scopes: list[str]
    label: str
    expires_at: dt.datetime
    revoked: bool


class UserIn(Strict):
    name: str = Field(pattern=NAME)
    roles: list[str] = Field(min_length=1, max_length=5)
    password: str | None = Field(default=None, max_length=1024)


class RolesIn(Strict):
    roles: list[str] = Field(max_length=5)


class PasswordIn(Strict):
    password: str = Field(min_length=1, max_length=1024)


class OwnPasswordIn(Strict):
    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    name: str
    roles: list[str]
    has_password: bool
    locked_until: dt.datetime | None
    disabled: bool


class GroupIn(Strict):
    production: bool


class GroupsOut(BaseModel):
    production: list[str]


class ApprovalOut(BaseModel):
    deployment_id: int
    approved_by: str
    state: str


class AuditEntryOut(BaseModel):
    seq: int
    at: str
    actor: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str
    mac: str = ""  # HMAC-SHA256 of hash under the server's audit key ("": written without)


# -- device enrollment and certificates (server/routes/pki.py) ----------------------
class EnrollIn(BaseModel):
    device_id: str = Field(pattern=DEVICE_ID)
    token: str = Field(min_length=16, max_length=256)
    csr: str = Field(max_length=MAX_CSR)


class RenewIn(BaseModel):
    csr: str = Field(max_length=MAX_CSR)


class CertificateOut(BaseModel):
    device_id: str
    hardware: str
    serial: str
    not_after: str
    certificate: str  # PEM, leaf only
    chain: str  # PEM, intermediate then root


class EnrollmentTokenIn(BaseModel):
    ttl_seconds: int = Field(default=86400, ge=60, le=30 * 86400)


class EnrollmentTokenOut(BaseModel):
    device_id: str
    token: str  # shown once; the server keeps only its hash
    expires_in: int


class RevokedOut(BaseModel):
    device_id: str
    revoked: list[str]


class IssuedCertificateOut(BaseModel):
    serial: str  # decimal, as in RevokedOut and the CRL
    device_id: str
    hardware: str
    not_after: str
    revoked_at: str | None


class SerialRevokedOut(BaseModel):
    serial: str
    newly_revoked: bool  # false: it was revoked already
