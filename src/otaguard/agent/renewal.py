"""Automatic renewal of the device's TLS client certificate before it expires.

At the start of every cycle the agent reads its certificate's validity (a PEM parse, no
network). Once less than ``cert_renew_fraction`` of the validity is left (default a third), it
makes a **new** key pair of the same type, sends a CSR to ``POST /device/v1/renew`` over the
current mTLS connection (the current certificate authenticates it) and checks the answer: a
certificate for this device, on the new key, valid now. The new pair then replaces the old:

1. staged copies ``<key>.new`` and ``<cert>.new`` are written, the key first;
2. the key, then the certificate, are replaced by the staged bytes;
3. the staged copies are removed.

Every write is ``Storage.write_atomic`` (temp, fsync, rename, fsync dir; keys 0600). A power
cut can stop this anywhere; ``recover`` (run before the agent loads its TLS identity) keeps a
pair that belongs together: both staged files present and matching: redo step 2; only
``<cert>.new``, matching the current key: replace the certificate; anything else is dropped
and the old pair stays. A refused or failed renewal changes no file
and is retried from a later cycle with exponential backoff (``cert_renew_retry`` doubling up
to ``cert_renew_retry_max`` seconds); the old certificate stays in use until it expires.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from otaguard.agent.config import AgentConfig
from otaguard.device.storage import Storage
from otaguard.errors import AuthError, KeyMaterialError, OTAGuardError
from otaguard.identity import ca
from otaguard.identity.device_keys import PrivateKey, make_csr
from otaguard.identity.enroll import renew

log = logging.getLogger(__name__)

NEW = ".new"


@dataclass(frozen=True)
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime
    serial: int

    def remaining_fraction(self, now: dt.datetime) -> float:
        lifetime = (self.not_after - self.not_before).total_seconds()
        if lifetime <= 0:
            return 0.0
        return max(0.0, (self.not_after - now).total_seconds() / lifetime)


def certificate_validity(path: Path) -> Validity:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return Validity(cert.not_valid_before_utc, cert.not_valid_after_utc, cert.serial_number)


def _public_der(key: object) -> bytes:
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise KeyMaterialError("device TLS keys are ECDSA or Ed25519")
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_key(data: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(data, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyMaterialError("the device TLS key is not an ECDSA or Ed25519 key")
    return key


def pair_matches(cert_pem: bytes, key_pem: bytes) -> bool:
    """True if the certificate is for the private key (both readable)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = _load_key(key_pem)
        return _public_der(cert.public_key()) == _public_der(key.public_key())
    except (ValueError, TypeError, OTAGuardError):
        return False


def _new_key_like(current: PrivateKey) -> PrivateKey:
    if isinstance(current, ed25519.Ed25519PrivateKey):
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _staged(path: Path) -> Path:
    return path.with_name(path.name + NEW)


class CertificateRenewal:
    """Keeps the agent's client certificate fresh; one per agent."""

    def __init__(
        self,
        config: AgentConfig,
        storage: Storage | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = ca.now,
    ) -> None:
        self.config = config
        self.storage = storage or Storage()
        self.clock = clock
        self.now = now
        self.failures = 0
        self.next_attempt = -math.inf
        self.last_error = ""
        if config.client_cert is not None:
            self.recover()

    @property
    def enabled(self) -> bool:
        return self.config.client_cert is not None and self.config.cert_renew_fraction > 0

    # -- crash recovery ---------------------------------------------------------------------
    def recover(self) -> None:
        """Finish or undo a key/certificate switch a power cut interrupted (module doc)."""
        paths = self.config.client_cert
        assert paths is not None
        cert, key = paths
        cert_new, key_new = _staged(cert), _staged(key)
        if cert_new.exists() and key_new.exists():
            if pair_matches(cert_new.read_bytes(), key_new.read_bytes()):
                log.warning("finishing an interrupted certificate renewal")
                self._switch(cert, key)
        elif (
            cert_new.exists()
            and key.exists()
            and pair_matches(cert_new.read_bytes(), key.read_bytes())
        ):
            log.warning("finishing an interrupted certificate renewal (certificate)")
            self.storage.write_atomic(cert, cert_new.read_bytes())
        for leftover in (cert_new, key_new):
            leftover.unlink(missing_ok=True)
            leftover.with_name(f".{leftover.name}.tmp").unlink(missing_ok=True)  # write_atomic's

    def _switch(self, cert: Path, key: Path) -> None:
        """Copy the staged pair over the live one, key first (each an atomic replace); the
        staged files stay until both are in place, so a cut in between is finished later."""
        self.storage.write_atomic(key, _staged(key).read_bytes(), mode=0o600)
        self.storage.write_atomic(cert, _staged(cert).read_bytes())
        _staged(cert).unlink()
        _staged(key).unlink()

    # -- renewal ----------------------------------------------------------------------------
    def due(self) -> bool:
        """Less than ``cert_renew_fraction`` of the certificate's validity is left."""
        paths = self.config.client_cert
        if not self.enabled or paths is None:
            return False
        try:
            validity = certificate_validity(paths[0])
        except (OSError, ValueError) as exc:
            log.error("cannot read the client certificate %s: %s", paths[0], exc)
            return False
        return validity.remaining_fraction(self.now()) < self.config.cert_renew_fraction

    def maybe_renew(self, client: httpx.Client) -> bool:
        """Renew if due and not backing off; True when a new pair is in place (the caller
        rebuilds its TLS client). Never raises for a refused or failed renewal."""
        if not self.due() or self.clock() < self.next_attempt:
            return False
        try:
            self.renew(client)
        except (httpx.HTTPError, OTAGuardError, OSError, ValueError, KeyError, TypeError) as exc:
            self.failures += 1
            delay = min(
                self.config.cert_renew_retry_max,
                self.config.cert_renew_retry * 2 ** (self.failures - 1),
            )
            self.next_attempt = self.clock() + delay
            self.last_error = _describe(exc)
            log.warning(
                "certificate renewal failed; the current certificate stays in use",
                extra={"error": self.last_error, "retry_in": round(delay)},
            )
            return False
        self.failures = 0
        self.next_attempt = -math.inf
        self.last_error = ""
        return True

    def renew(self, client: httpx.Client) -> x509.Certificate:
        """Get a certificate for a new key over ``client`` (mTLS with the current one) and put
        the new pair in place; raises on any failure, leaving the old files untouched."""
        paths = self.config.client_cert
        assert paths is not None
        cert_path, key_path = paths
        old = certificate_validity(cert_path)
        new_key = _new_key_like(_load_key(key_path.read_bytes()))
        pem = renew(client, make_csr(new_key, self.config.device_id)).encode()
        cert = x509.load_pem_x509_certificate(pem)
        who = ca.device_identity(cert)
        if who.device_id != self.config.device_id:
            raise AuthError(f"renewed certificate names {who.device_id}, not this device")
        if _public_der(cert.public_key()) != _public_der(new_key.public_key()):
            raise AuthError("renewed certificate is not for the key this device sent")
        if not cert.not_valid_before_utc <= self.now() < cert.not_valid_after_utc:
            raise AuthError("renewed certificate is not valid now")
        self.storage.write_atomic(_staged(key_path), _key_pem(new_key), mode=0o600)
        self.storage.write_atomic(_staged(cert_path), pem)
        self._switch(cert_path, key_path)
        log.info(
            "client certificate renewed",
            extra={
                "old_serial": str(old.serial),
                "serial": str(cert.serial_number),
                "not_after": cert.not_valid_after_utc.isoformat(),
            },
        )
        return cert


def _describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"HTTP {exc.response.status_code}: {exc.response.text[:200]}"
    return f"{type(exc).__name__}: {exc}"
