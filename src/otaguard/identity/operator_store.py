"""Operators, their roles and API tokens: accounts, scoped expiring tokens, and who a bearer
token belongs to (password login is in ``login_store.py``).

Why a module of its own: this is the management API's authentication, with rules that must
hold whatever calls it (a token is stored only as its hash; a revoked or expired token or one
of a disabled operator is refused; reserved names and the bootstrap token's identity cannot be
claimed by an account; a password set or reset by someone else revokes the account's tokens
and keeps it from approving until its user sets their own). The decisions are in the pure
``rbac`` and ``passwords`` modules; this one reads and writes the rows, one transaction per
method.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from otaguard.errors import AuthError, ConfigError, ConflictError, NotFoundError
from otaguard.identity.passwords import LockoutPolicy, hash_password
from otaguard.identity.rbac import (
    ALL_SCOPES,
    DutyFacts,
    Principal,
    Role,
    parse_roles,
    parse_scopes,
)
from otaguard.store.base import utcnow
from otaguard.store.credentials import secret_hash
from otaguard.store.engine import Database
from otaguard.store.identity_models import LoginThrottle, OperatorToken, User
from otaguard.store.models import ApiToken

DEFAULT_TOKEN_TTL = dt.timedelta(days=30)
MAX_TOKEN_TTL = dt.timedelta(days=365)
LOGIN_TOKEN_TTL = dt.timedelta(hours=12)
TOKEN_PREFIX = "otg_"
#: names no account may take: the bootstrap admin token's identity and names the audit log
#: uses for actors that are not operators (compared case-insensitively)
RESERVED_NAMES = frozenset({"admin", "anonymous", "bootstrap"})


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


def _added(names: list[str], name: str) -> list[str]:
    return names if name in names else [*names, name]


def _user(s: Session, name: str, *, lock: bool = False) -> User:
    u = s.get(User, name, with_for_update=lock)
    if u is None:
        raise NotFoundError(f"no user {name}")
    return u


def issue_token(
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
    def add_user(
        self, name: str, roles: list[str], password: str | None = None, *, by: str | None = None
    ) -> UserView:
        """A new account. ``by``: the operator creating it (None: the server host's CLI); a
        password given here was set by someone else, so the account cannot approve until
        its user sets their own.

        Raises:
            ConflictError: the name exists, is reserved, or is a bootstrap token's identity.
            ConfigError: unknown role or weak password.
        """
        _roles(roles)
        if name.lower() in RESERVED_NAMES:
            raise ConflictError(f"user name {name} is reserved")
        pw = hash_password(password) if password is not None else None
        with self.db.session() as s:
            if s.get(User, name) is not None:
                raise ConflictError(f"user {name} exists")
            if s.scalars(select(ApiToken).where(ApiToken.name == name)).first() is not None:
                raise ConflictError(f"user name {name} is reserved (a bootstrap token's)")
            u = User(
                name=name,
                roles=sorted(set(roles)),
                password_hash=pw,
                managed_by=[by or "cli"],
                reset_by=[],
                password_set_by_other=pw is not None,
            )
            s.add(u)
            try:
                s.flush()
            except IntegrityError as exc:
                raise ConflictError(f"user {name} exists") from exc
            return _user_view(u)

    def set_roles(self, name: str, roles: list[str], *, by: str | None = None) -> UserView:
        """New roles, effective on the account's next request (tokens read roles live);
        ``by`` is remembered as one who manages the account (separation of duties)."""
        _roles(roles)
        with self.db.session() as s:
            u = _user(s, name, lock=True)
            u.roles = sorted(set(roles))
            if by != name:
                u.managed_by = _added(u.managed_by, by or "cli")
            return _user_view(u)

    def set_password(self, name: str, password: str, *, by: str | None = None) -> UserView:
        """An administrative password (re)set by ``by`` (None: the server host's CLI): revokes
        every token of the account, unlocks it, and marks the password as set by someone
        else (no approvals until its user sets their own, ``Logins.change_own_password``)."""
        pw = hash_password(password)
        now = utcnow()
        with self.db.session() as s:
            u = _user(s, name, lock=True)
            who = by or "cli"
            if u.password_hash is not None:
                u.reset_by = _added(u.reset_by, who)
            u.managed_by = _added(u.managed_by, who)
            u.password_hash = pw
            u.password_set_by_other = True
            u.failed_logins = 0
            u.locked_until = None
            s.execute(delete(LoginThrottle).where(LoginThrottle.user_name == name))
            s.execute(
                update(OperatorToken)
                .where(OperatorToken.user_name == name, OperatorToken.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            return _user_view(u)

    def duty_facts(self, name: str) -> DutyFacts:
        """Who manages ``name``'s account (empty facts for the bootstrap identity)."""
        with self.db.session(write=False) as s:
            u = s.get(User, name)
            if u is None:
                return DutyFacts(False, frozenset(), frozenset())
            return DutyFacts(
                bool(u.password_set_by_other), frozenset(u.managed_by), frozenset(u.reset_by)
            )

    def get_user(self, name: str) -> UserView:
        with self.db.session(write=False) as s:
            return _user_view(_user(s, name))

    def list_users(self) -> list[UserView]:
        with self.db.session(write=False) as s:
            return [_user_view(u) for u in s.scalars(select(User).order_by(User.name))]

    # -- tokens (login: login_store.py) -----------------------------------------------------
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
            return issue_token(s, user, scopes, ttl, label, utcnow())

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
            # Bootstrap tokens the server itself writes (the admin-token file): always admin,
            # whatever account may carry the same name (no account can claim or demote it).
            legacy = s.get(ApiToken, digest)
            if legacy is None or not hmac.compare_digest(legacy.token_hash, digest):
                raise AuthError("invalid API token")
            return Principal(legacy.name, frozenset({Role.ADMIN}), frozenset({ALL_SCOPES}), None)

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
