"""Persistence of identities and access, on the server's ``Store`` (one transaction per method).

Operators and their tokens, the hash-chained audit log, device enrollment tokens and issued
certificates, production groups and deployment approvals. Decisions come from the pure modules
(``rbac``, ``passwords``, ``audit``); this module only reads and writes rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from otaguard.errors import AuthError, ConfigError, ConflictError, ForbiddenError, NotFoundError
from otaguard.fleet.status import DeploymentState
from otaguard.identity import audit as chain
from otaguard.identity.passwords import (
    LockoutPolicy,
    hash_password,
    is_locked,
    verify_password,
)
from otaguard.identity.rbac import ALL_SCOPES, Principal, Role, may_approve, parse_roles
from otaguard.store.database import Store, secret_hash
from otaguard.store.identity_models import (
    AuditRecord,
    DeploymentApproval,
    DeviceCertificate,
    DeviceCrl,
    EnrollmentToken,
    OperatorToken,
    ProductionGroup,
    User,
)
from otaguard.store.models import ApiToken, Deployment, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

DEFAULT_TOKEN_TTL = dt.timedelta(days=30)
MAX_TOKEN_TTL = dt.timedelta(days=365)
LOGIN_TOKEN_TTL = dt.timedelta(hours=12)
ENROLLMENT_TOKEN_TTL = dt.timedelta(days=30)
TOKEN_PREFIX = "otg_"
_AUDIT_COLUMNS = (*chain.FIELDS, "prev_hash", "hash")
#: pg_advisory_xact_lock key held while appending to the audit log
AUDIT_LOCK = 0x07A6_A0D1
#: ... and while creating or re-signing the device CRL (whose row is ``CRL_ROW``)
CRL_LOCK = 0x07A6_C41
CRL_ROW = 1


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


@dataclass(frozen=True)
class EnrollmentGrant:
    device_id: str
    hardware: str
    tags: list[str]


@dataclass(frozen=True)
class CertificateView:
    serial: int
    device_id: str
    hardware: str
    not_after: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True)
class CrlState:
    """The device CRL as stored: its number, signed PEM, and the serials it lists."""

    number: int
    pem: bytes
    revoked: frozenset[int]


@dataclass(frozen=True)
class ImportedCertificate:
    serial: int
    device_id: str
    hardware: str
    not_after: dt.datetime
    revoked_at: dt.datetime | None = None


@dataclass(frozen=True)
class ImportedToken:
    token_hash: str
    device_id: str
    hardware: str
    expires_at: dt.datetime


#: Signs a CRL of (serial -> revocation time) with the given number; returns its PEM.
SignCrl = Callable[[dict[int, dt.datetime], int], bytes]


def _cert_view(r: DeviceCertificate) -> CertificateView:
    return CertificateView(int(r.serial, 16), r.device_id, r.hardware, r.not_after, r.revoked_at)


def _revoked(s: Session) -> dict[int, dt.datetime]:
    """Serial -> revocation time of every revoked certificate not yet expired (an expired
    one is refused anyway and leaves the CRL)."""
    rows = s.execute(
        select(DeviceCertificate.serial, DeviceCertificate.revoked_at).where(
            DeviceCertificate.revoked_at.is_not(None), DeviceCertificate.not_after > utcnow()
        )
    )
    return {int(serial, 16): at for serial, at in rows if at is not None}


def _user_view(u: User) -> UserView:
    return UserView(u.name, list(u.roles), u.password_hash is not None, u.locked_until, u.disabled)


def _roles(names: list[str]) -> frozenset[Role]:
    try:
        return parse_roles(names)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


class IdentityStore:
    def __init__(self, store: Store, lockout: LockoutPolicy | None = None) -> None:
        self.store = store
        self.lockout = lockout or LockoutPolicy()

    # -- users ------------------------------------------------------------------------------
    def add_user(self, name: str, roles: list[str], password: str | None = None) -> UserView:
        _roles(roles)
        pw = hash_password(password) if password is not None else None
        with self.store.session() as s:
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
        with self.store.session() as s:
            if s.get(User, name) is None:
                s.add(User(name=name, roles=sorted(set(roles))))

    def _user(self, s: Session, name: str, *, lock: bool = False) -> User:
        u = s.get(User, name, with_for_update=lock)
        if u is None:
            raise NotFoundError(f"no user {name}")
        return u

    def set_roles(self, name: str, roles: list[str]) -> UserView:
        _roles(roles)
        with self.store.session() as s:
            u = self._user(s, name, lock=True)
            u.roles = sorted(set(roles))
            return _user_view(u)

    def set_password(self, name: str, password: str) -> UserView:
        pw = hash_password(password)
        with self.store.session() as s:
            u = self._user(s, name, lock=True)
            u.password_hash = pw
            u.failed_logins = 0
            u.locked_until = None
            return _user_view(u)

    def get_user(self, name: str) -> UserView:
        with self.store.session(write=False) as s:
            return _user_view(self._user(s, name))

    def list_users(self) -> list[UserView]:
        with self.store.session(write=False) as s:
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
        locked account is refused without checking the password."""
        now = now or utcnow()
        with self.store.session() as s:
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
                return self._issue(s, u.name, scopes or [ALL_SCOPES], ttl, "login", now)
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
        with self.store.session() as s:
            self._user(s, user)
            return self._issue(s, user, scopes, ttl, label, utcnow())

    @staticmethod
    def _issue(
        s: Session, user: str, scopes: list[str], ttl: dt.timedelta, label: str, now: dt.datetime
    ) -> IssuedToken:
        from otaguard.identity.rbac import parse_scopes

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

    def authenticate(self, token: str, *, now: dt.datetime | None = None) -> Principal:
        """The operator a bearer token belongs to (roles and token scopes)."""
        now = now or utcnow()
        digest = secret_hash(token)
        with self.store.session(write=False) as s:
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
        with self.store.session(write=False) as s:
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
        with self.store.session() as s:
            t = s.get(OperatorToken, token_id, with_for_update=True)
            if t is None or (user is not None and t.user_name != user):
                raise NotFoundError(f"no token {token_id}")
            t.revoked_at = t.revoked_at or utcnow()

    # -- audit log --------------------------------------------------------------------------
    def audit(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        outcome: str = "ok",
        detail: dict[str, Any] | None = None,
    ) -> chain.AuditEntry:
        """Append one entry, chained to the last (writers serialized by a lock)."""
        with self.store.session() as s:
            if s.get_bind().dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK})
            last = s.scalars(select(AuditRecord).order_by(AuditRecord.seq.desc()).limit(1)).first()
            entry = chain.chain(
                _entry(last) if last else None,
                at=utcnow().isoformat(),
                actor=actor[:200],
                action=action[:100],
                target=target[:300],
                outcome=outcome[:40],
                detail=detail or {},
            )
            s.add(AuditRecord(**{k: getattr(entry, k) for k in _AUDIT_COLUMNS}))
            return entry

    def audit_entries(self, *, batch: int = 1000) -> Iterator[chain.AuditEntry]:
        """Every entry in storage order (by sequence), read in batches."""
        after = 0
        while True:
            with self.store.session(write=False) as s:
                rows = list(
                    s.scalars(
                        select(AuditRecord)
                        .where(AuditRecord.seq > after)
                        .order_by(AuditRecord.seq)
                        .limit(batch)
                    )
                )
            if not rows:
                return
            for r in rows:
                yield _entry(r)
            after = rows[-1].seq

    # -- device CA state: enrollment tokens, issued certificates, the CRL -------------------
    # Shared by every server process (``identity/authority.py`` keeps the key material in
    # files and calls these); each method is one transaction.
    def create_enrollment_token(
        self,
        device_id: str,
        hardware: str,
        *,
        tags: list[str] | None = None,
        created_by: str,
        ttl: dt.timedelta = ENROLLMENT_TOKEN_TTL,
    ) -> str:
        """A one-time token for ``device_id``; only its SHA-256 is stored."""
        token = "enr_" + secrets.token_urlsafe(32)
        with self.store.session() as s:
            s.add(
                EnrollmentToken(
                    token_hash=secret_hash(token),
                    device_id=device_id,
                    hardware=hardware,
                    tags=sorted(set(tags or [])),
                    created_by=created_by[:200],
                    expires_at=utcnow() + ttl,
                )
            )
        return token

    def consume_enrollment_token(self, token: str, device_id: str) -> EnrollmentGrant:
        """Use up ``token`` for ``device_id`` and return its grant. Atomic across processes:
        the token is marked used by a conditional UPDATE (``used_at IS NULL``), so of two
        concurrent uses exactly one succeeds. A wrong device does not burn the token; an
        expired one is burnt and refused."""
        digest = secret_hash(token)
        now = utcnow()
        with self.store.session() as s:
            row = s.get(EnrollmentToken, digest)
            if row is None or row.used_at is not None:
                refusal = "unknown or already used enrollment token"
            elif not hmac.compare_digest(row.device_id, device_id):
                refusal = "enrollment token was issued for another device"
            else:
                taken = s.execute(
                    update(EnrollmentToken)
                    .where(EnrollmentToken.token_hash == digest, EnrollmentToken.used_at.is_(None))
                    .values(used_at=now)
                    .execution_options(synchronize_session=False)
                )
                if cast("CursorResult[Any]", taken).rowcount != 1:
                    refusal = "unknown or already used enrollment token"
                elif now >= row.expires_at:
                    refusal = "enrollment token has expired"  # burnt (committed) all the same
                else:
                    return EnrollmentGrant(row.device_id, row.hardware, list(row.tags))
        raise AuthError(refusal)

    def record_certificate(
        self, *, serial: int, device_id: str, hardware: str, not_after: dt.datetime, pem: str
    ) -> None:
        with self.store.session() as s:
            s.add(
                DeviceCertificate(
                    serial=format(serial, "x"),
                    device_id=device_id,
                    hardware=hardware,
                    not_after=not_after,
                    pem=pem,
                )
            )

    def certificates(self, device_id: str) -> list[CertificateView]:
        with self.store.session(write=False) as s:
            return [
                _cert_view(r)
                for r in s.scalars(
                    select(DeviceCertificate)
                    .where(DeviceCertificate.device_id == device_id)
                    .order_by(DeviceCertificate.issued_at)
                )
            ]

    def crl_state(self, known: int | None = None) -> CrlState | None:
        """The CRL and the revoked serials it lists; None when its number is still ``known``
        (one primary-key read) or there is none yet."""
        with self.store.session(write=False) as s:
            number = s.scalar(select(DeviceCrl.number).where(DeviceCrl.id == CRL_ROW))
            if number is None or number == known:
                return None
            row = s.get(DeviceCrl, CRL_ROW)
            assert row is not None
            return CrlState(row.number, row.pem.encode(), frozenset(_revoked(s)))

    def ensure_crl(self, floor: int, sign: SignCrl, *, force: bool = False) -> CrlState:
        """Create the CRL row, or re-sign it when ``force`` or its number is below ``floor``
        (the number of a CRL file already published); a new CRL's number exceeds both."""
        with self.store.session() as s:
            row = self._crl_row(s)
            if row is not None and row.number >= floor and not force:
                return CrlState(row.number, row.pem.encode(), frozenset(_revoked(s)))
            return self._sign(s, row, sign, floor=floor)

    def resign_crl(self, sign: SignCrl) -> CrlState:
        """A new CRL (next number, new validity window) of the current revocations."""
        with self.store.session() as s:
            return self._sign(s, self._crl_row(s), sign)

    def revoke_certificates(
        self,
        *,
        serial: int | None = None,
        device_id: str | None = None,
        reason: str = "unspecified",
        sign: SignCrl,
    ) -> tuple[list[int], CrlState]:
        """Revoke one certificate, or all of a device's, and re-sign the CRL in the same
        transaction (writers serialized on the CRL row). Returns the serials newly revoked."""
        with self.store.session() as s:
            crl = self._crl_row(s)
            q = select(DeviceCertificate).with_for_update()
            if serial is not None:
                q = q.where(DeviceCertificate.serial == format(serial, "x"))
            else:
                q = q.where(DeviceCertificate.device_id == device_id)
            rows = list(s.scalars(q))
            if not rows:
                raise NotFoundError(f"no certificate issued to {device_id or serial}")
            now = utcnow()
            new = []
            for r in rows:
                if r.revoked_at is None:
                    r.revoked_at = now
                    r.revoked_reason = reason[:200]
                    new.append(int(r.serial, 16))
            s.flush()
            return sorted(new), self._sign(s, crl, sign)

    @staticmethod
    def _crl_row(s: Session) -> DeviceCrl | None:
        if s.get_bind().dialect.name == "postgresql":
            # The row may not exist yet: serialize its creation too.
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CRL_LOCK})
        return s.get(DeviceCrl, CRL_ROW, with_for_update=True)

    @staticmethod
    def _sign(s: Session, row: DeviceCrl | None, sign: SignCrl, *, floor: int = 0) -> CrlState:
        revoked = _revoked(s)
        number = max(floor, row.number if row is not None else 0) + 1
        pem = sign(revoked, number)
        if row is None:
            s.add(DeviceCrl(id=CRL_ROW, number=number, pem=pem.decode()))
        else:
            row.number, row.pem, row.updated_at = number, pem.decode(), utcnow()
        return CrlState(number, pem, frozenset(revoked))

    def import_ca_state(
        self,
        certificates: list[ImportedCertificate],
        tokens: list[ImportedToken],
    ) -> tuple[int, int]:
        """Add what a file-based CA directory held (``issued.json``, ``tokens.json``, the
        CRL's revocations); rows already present are kept as they are, so importing twice
        changes nothing. Returns (certificates, tokens) added."""
        added = [0, 0]
        with self.store.session() as s:
            for c in certificates:
                key = format(c.serial, "x")
                row = s.get(DeviceCertificate, key, with_for_update=True)
                if row is None:
                    row = DeviceCertificate(
                        serial=key,
                        device_id=c.device_id,
                        hardware=c.hardware,
                        not_after=c.not_after,
                        pem="",  # the file registry kept no certificates
                    )
                    s.add(row)
                    added[0] += 1
                if c.revoked_at is not None and row.revoked_at is None:
                    row.revoked_at = c.revoked_at
                    row.revoked_reason = "imported from crl.pem"
            for t in tokens:
                if s.get(EnrollmentToken, t.token_hash) is None:
                    s.add(
                        EnrollmentToken(
                            token_hash=t.token_hash,
                            device_id=t.device_id,
                            hardware=t.hardware,
                            tags=[],
                            created_by="import:tokens.json",
                            expires_at=t.expires_at,
                        )
                    )
                    added[1] += 1
        return added[0], added[1]

    # -- production groups and approvals ----------------------------------------------------
    def set_production(self, tag: str, production: bool, *, by: str) -> None:
        with self.store.session() as s:
            row = s.get(ProductionGroup, tag)
            if production and row is None:
                s.add(ProductionGroup(tag=tag, created_by=by))
            elif not production and row is not None:
                s.delete(row)

    def production_groups(self) -> list[str]:
        with self.store.session(write=False) as s:
            return list(s.scalars(select(ProductionGroup.tag).order_by(ProductionGroup.tag)))

    def approve(self, deployment_id: int, approver: Principal) -> None:
        """Two-person rule: an approver other than the creator releases a deployment waiting
        for approval (devices are offered it from their next check-in)."""
        with self.store.session() as s:
            dep = s.get(Deployment, deployment_id, with_for_update=True)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            decision = may_approve(
                approver=approver.name, approver_roles=approver.roles, created_by=dep.created_by
            )
            if not decision.allowed:
                raise ForbiddenError(decision.reason)
            if dep.state != DeploymentState.AWAITING_APPROVAL.value:
                raise ConflictError(
                    f"deployment {deployment_id} is {dep.state}, not awaiting approval"
                )
            s.add(DeploymentApproval(deployment_id=deployment_id, approved_by=approver.name))
            dep.state = DeploymentState.ACTIVE.value

    def approval(self, deployment_id: int) -> str | None:
        with self.store.session(write=False) as s:
            row = s.get(DeploymentApproval, deployment_id)
            return None if row is None else row.approved_by


def _entry(r: AuditRecord) -> chain.AuditEntry:
    return chain.AuditEntry(
        seq=r.seq,
        at=r.at,
        actor=r.actor,
        action=r.action,
        target=r.target,
        outcome=r.outcome,
        detail=dict(r.detail or {}),
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


def token_fingerprint(token: str) -> str:
    """A short non-secret reference to a token for logs (never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]
