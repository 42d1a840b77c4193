"""The device CA on disk: the online intermediate, the CRL, issued certificates and one-time
enrollment tokens, in one directory shared by every server process.

Layout of ``<dir>``: ``root.pem`` (offline root certificate), ``intermediate.pem`` and
``intermediate.key`` (0600, the online issuing CA), ``chain.pem`` (intermediate + root, the
trust anchors the TLS server loads), ``crl.pem`` (signed by the intermediate), ``issued.json``
(serial -> device), ``tokens.json`` (sha256 of each enrollment token -> device, hardware,
expiry). The root private key is written elsewhere (``root_key_path``) and should be moved
offline after ``init``. Every change takes an exclusive ``flock`` on ``<dir>/.lock`` and
replaces files atomically.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otaguard.crypto.keys import write_private
from otaguard.errors import AuthError, ConfigError, NotFoundError
from otaguard.identity import ca

TOKEN_TTL = dt.timedelta(hours=24)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceAuthority:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._crl_cache: tuple[tuple[int, int, int], frozenset[int]] | None = None

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
        with authority._locked():
            authority._write_crl({}, 1)
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

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_json(self, name: str) -> dict[str, Any]:
        path = self.dir / name
        return dict(json.loads(path.read_text())) if path.exists() else {}

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        _write_atomic(self.dir / name, json.dumps(data, indent=1, sort_keys=True).encode())

    # -- issuing ------------------------------------------------------------------------------
    def issue(
        self,
        csr_pem: str | bytes,
        *,
        device_id: str,
        hardware: str,
        validity: dt.timedelta = ca.DEVICE_VALIDITY,
    ) -> x509.Certificate:
        csr = ca.load_csr(csr_pem)
        cert = ca.issue_device_cert(
            csr,
            device_id=device_id,
            hardware=hardware,
            issuer_key=self._intermediate_key(),
            issuer_cert=self.intermediate(),
            validity=validity,
        )
        with self._locked():
            issued = self._read_json("issued.json")
            issued[str(cert.serial_number)] = {
                "device": device_id,
                "hardware": hardware,
                "not_after": cert.not_valid_after_utc.isoformat(),
            }
            self._write_json("issued.json", issued)
        return cert

    def chain_pem(self) -> str:
        return self.chain_path.read_text()

    # -- enrollment tokens --------------------------------------------------------------------
    def create_token(self, device_id: str, hardware: str, ttl: dt.timedelta = TOKEN_TTL) -> str:
        """A one-time factory token for ``device_id``; only its sha256 is stored."""
        token = secrets.token_urlsafe(32)
        expires = ca.now() + ttl
        with self._locked():
            tokens = self._read_json("tokens.json")
            tokens[token_digest(token)] = {
                "device": device_id,
                "hardware": hardware,
                "expires": expires.isoformat(),
            }
            self._write_json("tokens.json", tokens)
        return token

    def consume_token(self, token: str, device_id: str) -> str:
        """Use up ``token`` for ``device_id``; return the hardware type it was issued for.
        A wrong, used, expired or other device's token is refused (and a wrong device does
        not burn the token)."""
        digest = token_digest(token)
        with self._locked():
            tokens = self._read_json("tokens.json")
            entry = next((v for k, v in tokens.items() if hmac.compare_digest(k, digest)), None)
            if entry is None:
                raise AuthError("unknown or already used enrollment token")
            if entry["device"] != device_id:
                raise AuthError("enrollment token was issued for another device")
            del tokens[digest]
            self._write_json("tokens.json", tokens)
        if dt.datetime.fromisoformat(entry["expires"]) < ca.now():
            raise AuthError("enrollment token has expired")
        return str(entry["hardware"])

    # -- revocation ---------------------------------------------------------------------------
    def _current_crl(self) -> x509.CertificateRevocationList:
        return x509.load_pem_x509_crl((self.dir / "crl.pem").read_bytes())

    def _write_crl(self, revoked: dict[int, dt.datetime], number: int) -> None:
        crl = ca.build_crl(self._intermediate_key(), self.intermediate(), revoked, number=number)
        _write_atomic(self.dir / "crl.pem", crl.public_bytes(serialization.Encoding.PEM))

    def revoke(self, *, serial: int | None = None, device_id: str | None = None) -> list[int]:
        """Revoke one certificate, or every certificate issued to ``device_id``; re-sign the
        CRL. Returns the serials newly revoked."""
        with self._locked():
            issued = self._read_json("issued.json")
            if serial is not None:
                serials = [serial]
            else:
                serials = [int(s) for s, v in issued.items() if v["device"] == device_id]
            if not serials:
                raise NotFoundError(f"no certificate issued to {device_id or serial}")
            crl = self._current_crl()
            revoked = {r.serial_number: r.revocation_date_utc for r in crl}
            new = [s for s in serials if s not in revoked]
            t = ca.now()
            revoked.update(dict.fromkeys(new, t))
            number_ext = crl.extensions.get_extension_for_class(x509.CRLNumber).value
            self._write_crl(revoked, number_ext.crl_number + 1)
        return new

    def refresh_crl(self) -> None:
        """Re-sign the CRL with a new validity window (run before ``next_update``)."""
        with self._locked():
            crl = self._current_crl()
            number_ext = crl.extensions.get_extension_for_class(x509.CRLNumber).value
            self._write_crl(
                {r.serial_number: r.revocation_date_utc for r in crl}, number_ext.crl_number + 1
            )

    def crl_pem(self) -> bytes:
        return (self.dir / "crl.pem").read_bytes()

    def revoked_serials(self) -> frozenset[int]:
        """Serials in the current CRL, verified against the intermediate; re-read only when
        the file changes, so a revocation counts from the device's next request."""
        path = self.dir / "crl.pem"
        st = path.stat()
        mtime = (st.st_ino, st.st_mtime_ns, st.st_size)  # replaced atomically: new inode
        if self._crl_cache is None or self._crl_cache[0] != mtime:
            crl = self._current_crl()
            ca.verify_crl(crl, self.intermediate())
            self._crl_cache = (mtime, frozenset(r.serial_number for r in crl))
        return self._crl_cache[1]
