"""The device CA: key material in one directory (copied to every server host), mutable state
in the server's database.

Files in ``<dir>``: ``root.pem`` (offline root certificate), ``intermediate.pem`` and
``intermediate.key`` (0600, the online issuing CA), ``chain.pem`` (intermediate + root, the
trust anchors the TLS server loads) and ``crl.pem`` (the latest CRL, signed by the
intermediate, for proxies and other verifiers). The root private key is written elsewhere
(``root_key_path``) and should be moved offline after ``init``.

Database (through ``IdentityStore``, shared by every server process on every host): one-time
enrollment tokens (hash only), the registry of issued certificates with their revocations, and
the CRL with its number. Revocation is checked per request against an in-memory set of revoked
serials, refreshed from the database at most every ``refresh_seconds`` (at once in the process
that revoked): a revocation made through another server counts there within that interval.

Earlier versions kept ``issued.json`` and ``tokens.json`` in the directory; ``attach`` imports
them once and renames them ``*.imported``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otaguard.crypto.keys import write_private
from otaguard.errors import ConfigError
from otaguard.identity import ca

if TYPE_CHECKING:
    from otaguard.identity.store import (
        CertificateView,
        CrlState,
        IdentityStore,
        ImportedCertificate,
        ImportedToken,
    )

TOKEN_TTL = dt.timedelta(hours=24)
LEGACY_FILES = ("issued.json", "tokens.json")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def legacy_state(
    directory: Path,
) -> tuple[list[ImportedCertificate], list[ImportedToken]] | None:
    """What a file-based CA directory held: issued certificates (with the CRL's revocations)
    and enrollment tokens; None when it has neither ``issued.json`` nor ``tokens.json``."""
    from otaguard.identity.store import ImportedCertificate, ImportedToken

    paths = [directory / name for name in LEGACY_FILES]
    if not any(p.exists() for p in paths):
        return None
    issued, tokens = (json.loads(p.read_text()) if p.exists() else {} for p in paths)
    revoked: dict[int, dt.datetime] = {}
    if (directory / "crl.pem").exists():
        crl = x509.load_pem_x509_crl((directory / "crl.pem").read_bytes())
        revoked = {r.serial_number: r.revocation_date_utc for r in crl}
    certs = [
        ImportedCertificate(
            serial=int(serial),
            device_id=str(v["device"]),
            hardware=str(v["hardware"]),
            not_after=dt.datetime.fromisoformat(v["not_after"]),
            revoked_at=revoked.pop(int(serial), None),
        )
        for serial, v in issued.items()
    ]
    # Revoked serials the registry did not know stay revoked until they would have expired.
    latest = ca.now() + ca.DEVICE_VALIDITY
    certs += [ImportedCertificate(s, "", "", latest, at) for s, at in revoked.items()]
    toks = [
        ImportedToken(
            token_hash=digest,
            device_id=str(v["device"]),
            hardware=str(v["hardware"]),
            expires_at=dt.datetime.fromisoformat(v["expires"]),
        )
        for digest, v in tokens.items()
    ]
    return certs, toks


class DeviceAuthority:
    """The CA's key material (files in ``directory``) and, once ``attach``-ed to the server
    database, its state: issuing, enrollment tokens and revocation need ``state``."""

    def __init__(
        self,
        directory: Path,
        state: IdentityStore | None = None,
        *,
        refresh_seconds: float = 1.0,
    ) -> None:
        self.dir = directory
        self.state = state
        self.refresh_seconds = refresh_seconds
        self._refresh_lock = threading.Lock()
        self._checked = -float("inf")  # time.monotonic() of the last look at the database
        self._crl_number: int | None = None
        self._revoked: frozenset[int] = frozenset()
        self._file_cache: tuple[tuple[int, int, int], frozenset[int]] | None = None

    # -- setup --------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.dir / "chain.pem").exists()

    @classmethod
    def init(cls, directory: Path, root_key_path: Path) -> DeviceAuthority:
        """Create the root (key to ``root_key_path``) and the intermediate, and an empty CRL."""
        authority = cls(directory)
        if authority.initialized:
            raise ConfigError(f"a device CA already exists in {directory}")
        directory.mkdir(parents=True, exist_ok=True)
        root_key, root = ca.create_root()
        key, inter = ca.create_intermediate(root_key, root)
        write_private(root_key_path, _key_pem(root_key))
        write_private(directory / "intermediate.key", _key_pem(key))
        (directory / "root.pem").write_bytes(_pem(root))
        (directory / "intermediate.pem").write_bytes(_pem(inter))
        _write_atomic(directory / "crl.pem", authority._sign_crl({}, 1))
        (directory / "chain.pem").write_bytes(_pem(inter) + _pem(root))  # last: marks complete
        return authority

    @classmethod
    def ensure(cls, directory: Path) -> DeviceAuthority:
        """The CA in ``directory``, created on first use (embedded default: the root key is
        then kept next to it in ``offline/``, to be moved away)."""
        authority = cls(directory)
        if authority.initialized:
            return authority
        return cls.init(directory, directory / "offline" / "root.key")

    def attach(self, state: IdentityStore, *, refresh_seconds: float = 1.0) -> DeviceAuthority:
        """Keep this CA's state in ``state`` (the server database): import a file-based CA
        directory's ``issued.json``/``tokens.json`` once (renamed ``*.imported`` after), make
        sure the database has a CRL signed by this intermediate, and bring ``crl.pem`` up to
        date. Safe to run by several processes at once."""
        self.state = state
        self.refresh_seconds = refresh_seconds
        legacy = legacy_state(self.dir)
        if legacy is not None:
            state.import_ca_state(*legacy)
            for name in LEGACY_FILES:
                # absent, or another process renamed it first
                with contextlib.suppress(FileNotFoundError):
                    (self.dir / name).rename(self.dir / f"{name}.imported")
        current = crl_number(self._file_crl()) if (self.dir / "crl.pem").exists() else 0
        # The number only ever grows: a file newer than the database's CRL (a CA directory
        # from before, or a CRL re-signed elsewhere) is re-signed past its number, and so is
        # the CRL after an import (whose revocations it must list).
        self._apply(state.ensure_crl(current, self._sign_crl, force=legacy is not None))
        self._checked = time.monotonic()
        return self

    def _state(self) -> IdentityStore:
        if self.state is None:
            raise ConfigError(
                "the device CA's tokens, certificates and revocations live in the server "
                "database: none is configured (CLI: --data-dir or --database)"
            )
        return self.state

    # -- material -----------------------------------------------------------------------------
    @property
    def chain_path(self) -> Path:
        return self.dir / "chain.pem"

    def intermediate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.dir / "intermediate.pem").read_bytes())

    def _intermediate_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key((self.dir / "intermediate.key").read_bytes(), None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError("the intermediate CA key is not an ECDSA key")
        return key

    def chain_pem(self) -> str:
        return self.chain_path.read_text()

    # -- issuing ------------------------------------------------------------------------------
    def sign(
        self,
        csr_pem: str | bytes,
        *,
        device_id: str,
        hardware: str,
        validity: dt.timedelta = ca.DEVICE_VALIDITY,
    ) -> x509.Certificate:
        """A certificate for ``device_id`` from the CSR, not recorded anywhere (tests, and
        ``issue`` below)."""
        return ca.issue_device_cert(
            ca.load_csr(csr_pem),
            device_id=device_id,
            hardware=hardware,
            issuer_key=self._intermediate_key(),
            issuer_cert=self.intermediate(),
            validity=validity,
        )

    def issue(
        self,
        csr_pem: str | bytes,
        *,
        device_id: str,
        hardware: str,
        validity: dt.timedelta = ca.DEVICE_VALIDITY,
    ) -> x509.Certificate:
        """Sign and record a certificate (revocable by serial or by device)."""
        state = self._state()
        cert = self.sign(csr_pem, device_id=device_id, hardware=hardware, validity=validity)
        state.record_certificate(
            serial=cert.serial_number,
            device_id=device_id,
            hardware=hardware,
            not_after=cert.not_valid_after_utc,
            pem=_pem(cert).decode(),
        )
        return cert

    # -- enrollment tokens --------------------------------------------------------------------
    def create_token(
        self,
        device_id: str,
        hardware: str,
        ttl: dt.timedelta = TOKEN_TTL,
        *,
        created_by: str = "unknown",
    ) -> str:
        """A one-time factory token for ``device_id``; only its sha256 is stored."""
        return self._state().create_enrollment_token(
            device_id, hardware, created_by=created_by, ttl=ttl
        )

    def consume_token(self, token: str, device_id: str) -> str:
        """Use up ``token`` for ``device_id`` (once, across every server process); return the
        hardware type it was issued for. A wrong, used, expired or other device's token is
        refused (and a wrong device does not burn the token)."""
        return self._state().consume_enrollment_token(token, device_id).hardware

    # -- revocation ---------------------------------------------------------------------------
    def _sign_crl(self, revoked: dict[int, dt.datetime], number: int) -> bytes:
        crl = ca.build_crl(self._intermediate_key(), self.intermediate(), revoked, number=number)
        return crl.public_bytes(serialization.Encoding.PEM)

    def _file_crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl((self.dir / "crl.pem").read_bytes())

    def _apply(self, crl: CrlState) -> None:
        """Take a CRL from the database: verify it is this intermediate's, use its serials,
        and write it to ``crl.pem`` unless the file already has that number or a later one."""
        ca.verify_crl(x509.load_pem_x509_crl(crl.pem), self.intermediate())
        # Processes of one host may share the directory: compare and replace under its lock,
        # so an older CRL never replaces a newer one.
        with open(self.dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                on_disk = crl_number(self._file_crl())
            except (FileNotFoundError, ValueError, x509.ExtensionNotFound):
                on_disk = -1
            if on_disk < crl.number:
                _write_atomic(self.dir / "crl.pem", crl.pem)
        self._revoked, self._crl_number = crl.revoked, crl.number

    def revoke(
        self,
        *,
        serial: int | None = None,
        device_id: str | None = None,
        reason: str = "unspecified",
    ) -> list[int]:
        """Revoke one certificate, or every certificate issued to ``device_id``; re-sign the
        CRL. Counts at once in this process, and in every other server process within its
        ``refresh_seconds``. Returns the serials newly revoked."""
        new, crl = self._state().revoke_certificates(
            serial=serial, device_id=device_id, reason=reason, sign=self._sign_crl
        )
        with self._refresh_lock:
            self._apply(crl)
            self._checked = time.monotonic()
        return new

    def certificates(self, device_id: str) -> list[CertificateView]:
        """Every certificate issued to the device, oldest first (revoked ones too)."""
        return self._state().certificates(device_id)

    def refresh_crl(self) -> None:
        """Re-sign the CRL with a new validity window (run before ``next_update``)."""
        crl = self._state().resign_crl(self._sign_crl)
        with self._refresh_lock:
            self._apply(crl)

    def crl_pem(self) -> bytes:
        return (self.dir / "crl.pem").read_bytes()

    def revoked_serials(self) -> frozenset[int]:
        """Serials revoked and not yet expired. With the database: an in-memory set, re-read
        at most every ``refresh_seconds`` (and then only when the CRL number changed), so this
        costs no query on most requests. Without: the verified ``crl.pem`` (re-read when the
        file changes)."""
        if self.state is None:
            return self._file_revoked()
        if time.monotonic() - self._checked < self.refresh_seconds:
            return self._revoked
        with self._refresh_lock:
            started = time.monotonic()
            if started - self._checked >= self.refresh_seconds:  # not done while we waited
                crl = self.state.crl_state(known=self._crl_number)
                if crl is not None:
                    self._apply(crl)
                self._checked = started
            return self._revoked

    def _file_revoked(self) -> frozenset[int]:
        path = self.dir / "crl.pem"
        st = path.stat()
        mtime = (st.st_ino, st.st_mtime_ns, st.st_size)  # replaced atomically: new inode
        if self._file_cache is None or self._file_cache[0] != mtime:
            crl = self._file_crl()
            ca.verify_crl(crl, self.intermediate())
            self._file_cache = (mtime, frozenset(r.serial_number for r in crl))
        return self._file_cache[1]
