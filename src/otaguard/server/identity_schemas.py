"""Request and response bodies of the identity and access routes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"


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
