"""Operators, their roles and API tokens: accounts, password login with lock-out, scoped
expiring tokens, and who a bearer token belongs to.

Why a module of its own: this is the management API's authentication, with rules that must
hold whatever calls it (a locked account is refused before its password is checked, a failed
login counts towards lock-out, a token is stored only as its hash, a revoked or expired token
or one of a disabled operator is refused). The decisions are in the pure ``rbac`` and
``passwords`` modules; this one reads and writes the rows, one transaction per method.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from otaguard.errors import AuthError, ConfigError, ConflictError, NotFoundError
from otaguard.identity.passwords import (
    LockoutPolicy,
    hash_password,
    is_locked,
    verify_password,
)
from otaguard.identity.rbac import ALL_SCOPES, Principal, Role, parse_roles, parse_scopes
from otaguard.store.base import utcnow
from otaguard.store.credentials import secret_hash
from otaguard.store.engine import Database
from otaguard.store.identity_models import OperatorToken, User
from otaguard.store.models import ApiToken

DEFAULT_TOKEN_TTL = dt.timedelta(days=30)
MAX_TOKEN_TTL = dt.timedelta(days=365)
LOGIN_TOKEN_TTL = dt.timedelta(hours=12)
TOKEN_PREFIX = "otg_"


@dataclass(frozen=True)
class UserView:
    name: str
    roles: list[str]
    has_password: bool
    locked_until: dt.datetime | None
    disabled: bool


@dataclass(frozen=True)
class TokenView:
    id: str
    user: str
    scopes: list[str]
    label: str
    expires_at: dt.datetime
    revoked: bool


@dataclass(frozen=True)
class IssuedToken:
    id: str
    token: str  # shown once
    expires_at: dt.datetime


def _user_view(u: User) -> UserView:
    return UserView(u.name, list(u.roles), u.password_hash is not None, u.locked_until, u.disabled)


def _roles(names: list[str]) -> frozenset[Role]:
    try:
        return parse_roles(names)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _user(s: Session, name: str, *, lock: bool = False) -> User:
    u = s.get(User, name, with_for_update=lock)
    if u is None:
        raise NotFoundError(f"no user {name}")
    return u


def _issue(
    s: Session, user: str, scopes: list[str], ttl: dt.timedelta, label: str, now: dt.datetime
) -> IssuedToken:
    try:
        parsed = sorted(parse_scopes(scopes))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    token_id = secrets.token_hex(8)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = now + ttl
    s.add(
        OperatorToken(
            id=token_id,
            token_hash=secret_hash(token),
            user_name=user,
            scopes=parsed,
            label=label[:128],
            expires_at=expires,
        )
    )
    return IssuedToken(token_id, token, expires)


class Operators:
    """Operator accounts and tokens on one ``Database`` (one transaction per method)."""

    def __init__(self, db: Database, lockout: LockoutPolicy) -> None:
        self.db = db
        self.lockout = lockout

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, roles: list[str], password: str | None = None) -> UserView:
        _roles(roles)
        pw = hash_password(password) if password is not None else None
        with self.db.session() as s:
            if s.get(User, name) is not None:
                raise ConflictError(f"user {name} exists")
            u = User(name=name, roles=sorted(set(roles)), password_hash=pw)
            s.add(u)
            try:
                s.flush()
            except IntegrityError as exc:
                raise ConflictError(f"user {name} exists") from exc
            return _user_view(u)

    def ensure_user(self, name: str, roles: list[str]) -> None:
        """Create ``name`` with ``roles`` unless it exists (the server's bootstrap admin)."""
        with self.db.session() as s:
            if s.get(User, name) is None:
                s.add(User(name=name, roles=sorted(set(roles))))

    def set_roles(self, name: str, roles: list[str]) -> UserView:
        _roles(roles)
        with self.db.session() as s:
            u = _user(s, name, lock=True)
            u.roles = sorted(set(roles))
            return _user_view(u)

    def set_password(self, name: str, password: str) -> UserView:
        pw = hash_password(password)
        with self.db.session() as s:
            u = _user(s, name, lock=True)
            u.password_hash = pw
            u.failed_logins = 0
            u.locked_until = None
            return _user_view(u)

    def get_user(self, name: str) -> UserView:
        with self.db.session(write=False) as s:
            return _user_view(_user(s, name))

    def list_users(self) -> list[UserView]:
        with self.db.session(write=False) as s:
            return [_user_view(u) for u in s.scalars(select(User).order_by(User.name))]

    # -- login and tokens -------------------------------------------------------------------
    def login(
        self,
        name: str,
        password: str,
        *,
        scopes: list[str] | None = None,
        ttl: dt.timedelta = LOGIN_TOKEN_TTL,
        now: dt.datetime | None = None,
    ) -> IssuedToken:
        """Check a password; on success issue a token. Failures count towards lock-out; a
        locked account is refused without checking the password.

        Raises:
            AuthError: refused: the account is locked, or the name, the password or the
                account (disabled) is wrong; the failure was counted. Retrying only helps
                after the lock-out ends.
            ConfigError: ``scopes`` names an unknown scope (nothing issued).
        """
        now = now or utcnow()
        with self.db.session() as s:
            u = s.get(User, name, with_for_update=True)
            if u is not None and is_locked(u.locked_until, now):
                raise AuthError("account locked after repeated failed logins; try later")
            ok = verify_password(u.password_hash if u else None, password)
            if u is None or not ok or u.disabled:
                if u is not None:
                    u.failed_logins += 1
                    u.locked_until = (
                        self.lockout.locked_until_after_failure(u.failed_logins, now)
                        or u.locked_until
                    )
                failed = AuthError("wrong user name or password")
            else:
                u.failed_logins = 0
                u.locked_until = None
                return _issue(s, u.name, scopes or [ALL_SCOPES], ttl, "login", now)
        raise failed

    def create_token(
        self,
        user: str,
        *,
        scopes: list[str],
        ttl: dt.timedelta = DEFAULT_TOKEN_TTL,
        label: str = "",
    ) -> IssuedToken:
        if ttl <= dt.timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise ConfigError(
                f"token lifetime must be between 1 second and {MAX_TOKEN_TTL.days} days"
            )
        with self.db.session() as s:
            _user(s, user)
            return _issue(s, user, scopes, ttl, label, utcnow())

    def authenticate(self, token: str, *, now: dt.datetime | None = None) -> Principal:
        """The operator a bearer token belongs to (roles and token scopes).

        Raises:
            AuthError: refused: unknown, revoked or expired token, or one of a disabled
                operator.
        """
        now = now or utcnow()
        digest = secret_hash(token)
        with self.db.session(write=False) as s:
            row = s.scalars(select(OperatorToken).where(OperatorToken.token_hash == digest)).first()
            if row is not None:
                if row.revoked_at is not None:
                    raise AuthError("API token revoked")
                if now >= row.expires_at:
                    raise AuthError("API token expired")
                u = s.get(User, row.user_name)
                if u is None or u.disabled:
                    raise AuthError("API token of a disabled user")
                return Principal(u.name, _roles(list(u.roles)), frozenset(row.scopes), row.id)
            # Bootstrap tokens the server itself writes (the admin-token file): full rights of
            # the user of that name, admin if there is none.
            legacy = s.get(ApiToken, digest)
            if legacy is None or not hmac.compare_digest(legacy.token_hash, digest):
                raise AuthError("invalid API token")
            u = s.get(User, legacy.name)
            roles = _roles(list(u.roles)) if u else frozenset({Role.ADMIN})
            return Principal(legacy.name, roles, frozenset({ALL_SCOPES}), None)

    def list_tokens(self, user: str | None = None) -> list[TokenView]:
        with self.db.session(write=False) as s:
            q = select(OperatorToken).order_by(OperatorToken.created_at)
            if user is not None:
                q = q.where(OperatorToken.user_name == user)
            return [
                TokenView(
                    t.id,
                    t.user_name,
                    list(t.scopes),
                    t.label,
                    t.expires_at,
                    t.revoked_at is not None,
                )
                for t in s.scalars(q)
            ]

    def revoke_token(self, token_id: str, *, user: str | None = None) -> None:
        """Revoke a token (``user``: only if it is theirs)."""
        with self.db.session() as s:
            t = s.get(OperatorToken, token_id, with_for_update=True)
            if t is None or (user is not None and t.user_name != user):
                raise NotFoundError(f"no token {token_id}")
            t.revoked_at = t.revoked_at or utcnow()
