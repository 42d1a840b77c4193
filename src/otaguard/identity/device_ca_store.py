"""The device CA's shared state: enrollment tokens, the certificates it issued, the CRL.

Why a module of its own: every server process signs and checks device certificates
(``identity/authority.py`` keeps the key material in files and calls this), so what must be
the same for all of them lives in the database: a one-time enrollment token is used up
exactly once across processes (a conditional UPDATE), a revocation re-signs the CRL in the
same transaction with the next number (writers serialized on the CRL row, or a PostgreSQL
advisory lock while that row does not exist yet), and processes poll the CRL number to notice
a revocation made elsewhere. Each method is one transaction.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from otaguard.errors import AuthError, NotFoundError
from otaguard.store.base import utcnow
from otaguard.store.credentials import secret_hash
from otaguard.store.engine import Database
from otaguard.store.identity_models import DeviceCertificate, DeviceCrl, EnrollmentToken

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

ENROLLMENT_TOKEN_TTL = dt.timedelta(days=30)
#: pg_advisory_xact_lock key held while creating or re-signing the device CRL (row ``CRL_ROW``)
CRL_LOCK = 0x07A6_C41
CRL_ROW = 1


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


def _crl_row(s: Session) -> DeviceCrl | None:
    if s.get_bind().dialect.name == "postgresql":
        # The row may not exist yet: serialize its creation too.
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CRL_LOCK})
    return s.get(DeviceCrl, CRL_ROW, with_for_update=True)


def _sign(s: Session, row: DeviceCrl | None, sign: SignCrl, *, floor: int = 0) -> CrlState:
    revoked = _revoked(s)
    number = max(floor, row.number if row is not None else 0) + 1
    pem = sign(revoked, number)
    if row is None:
        s.add(DeviceCrl(id=CRL_ROW, number=number, pem=pem.decode()))
    else:
        row.number, row.pem, row.updated_at = number, pem.decode(), utcnow()
    return CrlState(number, pem, frozenset(revoked))


def _import_certificate(s: Session, c: ImportedCertificate) -> bool:
    """Add one certificate of a file-based CA unless present; True if added."""
    key = format(c.serial, "x")
    row = s.get(DeviceCertificate, key, with_for_update=True)
    added = row is None
    if row is None:
        row = DeviceCertificate(
            serial=key,
            device_id=c.device_id,
            hardware=c.hardware,
            not_after=c.not_after,
            pem="",  # the file registry kept no certificates
        )
        s.add(row)
    if c.revoked_at is not None and row.revoked_at is None:
        row.revoked_at = c.revoked_at
        row.revoked_reason = "imported from crl.pem"
    return added


def _import_token(s: Session, t: ImportedToken) -> bool:
    """Add one enrollment token of a file-based CA unless present; True if added."""
    if s.get(EnrollmentToken, t.token_hash) is not None:
        return False
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
    return True


class DeviceCaRecords:
    """Enrollment tokens, issued certificates and the CRL on one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

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
        with self.db.session() as s:
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
        expired one is burnt and refused.

        Raises:
            AuthError: refused: unknown, used, expired or another device's token (retrying
                does not help; the operator issues a new one).
        """
        digest = secret_hash(token)
        now = utcnow()
        with self.db.session() as s:
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
        with self.db.session() as s:
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
        with self.db.session(write=False) as s:
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
        with self.db.session(write=False) as s:
            number = s.scalar(select(DeviceCrl.number).where(DeviceCrl.id == CRL_ROW))
            if number is None or number == known:
                return None
            row = s.get(DeviceCrl, CRL_ROW)
            assert row is not None
            return CrlState(row.number, row.pem.encode(), frozenset(_revoked(s)))

    def ensure_crl(self, floor: int, sign: SignCrl, *, force: bool = False) -> CrlState:
        """Create the CRL row, or re-sign it when ``force`` or its number is below ``floor``
        (the number of a CRL file already published); a new CRL's number exceeds both."""
        with self.db.session() as s:
            row = _crl_row(s)
            if row is not None and row.number >= floor and not force:
                return CrlState(row.number, row.pem.encode(), frozenset(_revoked(s)))
            return _sign(s, row, sign, floor=floor)

    def resign_crl(self, sign: SignCrl) -> CrlState:
        """A new CRL (next number, new validity window) of the current revocations."""
        with self.db.session() as s:
            return _sign(s, _crl_row(s), sign)

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
        with self.db.session() as s:
            crl = _crl_row(s)
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
            return sorted(new), _sign(s, crl, sign)

    def import_ca_state(
        self,
        certificates: list[ImportedCertificate],
        tokens: list[ImportedToken],
    ) -> tuple[int, int]:
        """Add what a file-based CA directory held (``issued.json``, ``tokens.json``, the
        CRL's revocations); rows already present are kept as they are, so importing twice
        changes nothing. Returns (certificates, tokens) added."""
        with self.db.session() as s:
            certs = sum(_import_certificate(s, c) for c in certificates)
            added_tokens = sum(_import_token(s, t) for t in tokens)
        return certs, added_tokens
