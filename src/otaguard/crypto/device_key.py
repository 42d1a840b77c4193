"""The device's own signing key (it signs version manifests), kept on the device.

Generated on the device at provisioning; only the public half leaves it (registered with the
server). Stored as unencrypted PKCS#8 PEM with mode 0600, like the TLS server key: a device boots
unattended and has no one to type a passphrase; on real hardware a secure element holds it
instead (securesystemslib's ``HSMSigner`` has the same ``Signer`` interface).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import CryptoSigner

from otaguard.crypto.keys import write_private
from otaguard.errors import KeyMaterialError


def create_device_key(path: Path) -> CryptoSigner:
    """Generate an Ed25519 key into ``path`` (0600); refuse to overwrite an existing one."""
    if path.exists():
        raise KeyMaterialError(f"refusing to overwrite existing device key {path}")
    signer = CryptoSigner.generate_ed25519()
    key = signer._private_key  # CryptoSigner has no public accessor for its key object
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
    return signer


def load_device_key(path: Path) -> CryptoSigner:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read device key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(f"{path} is not an unencrypted private key") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"unsupported device key type {type(key).__name__}")
    return CryptoSigner(key)


def load_or_create_device_key(path: Path) -> CryptoSigner:
    return load_device_key(path) if path.exists() else create_device_key(path)


def public_key_dict(signer: CryptoSigner) -> dict[str, Any]:
    """The public key as registered with the server (TUF key dictionary with its key id)."""
    pub = signer.public_key
    return {"keyid": pub.keyid, **pub.to_dict()}
