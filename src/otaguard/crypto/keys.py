"""Signing keys: generation, encrypted storage, loading as securesystemslib signers.

Ed25519 is the default; ECDSA P-256 is offered because many secure elements support only it.
Private keys are stored as PKCS#8 PEM encrypted with a passphrase (never in clear); public keys
are stored as the TUF/securesystemslib key dictionary so any TUF tool can read them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from otaguard.errors import KeyMaterialError

MIN_PASSPHRASE_LEN = 8


class KeyType(StrEnum):
    ED25519 = "ed25519"
    ECDSA_P256 = "ecdsa-p256"


@dataclass(frozen=True)
class KeyFiles:
    private: Path
    public: Path


def generate_signer(key_type: KeyType = KeyType.ED25519) -> CryptoSigner:
    """A fresh in-memory signer of ``key_type``."""
    if key_type is KeyType.ED25519:
        return CryptoSigner.generate_ed25519()
    if key_type is KeyType.ECDSA_P256:
        return CryptoSigner.generate_ecdsa()
    raise KeyMaterialError(f"unsupported key type {key_type!r}")


def _private_key_object(signer: CryptoSigner) -> Any:
    # CryptoSigner keeps the cryptography key object; it has no public accessor for it.
    return signer._private_key


def private_pem(signer: CryptoSigner, passphrase: bytes) -> bytes:
    """Encrypted PKCS#8 PEM of the signer's private key."""
    if len(passphrase) < MIN_PASSPHRASE_LEN:
        raise KeyMaterialError(f"passphrase must be at least {MIN_PASSPHRASE_LEN} bytes long")
    key = _private_key_object(signer)
    data: bytes = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.BestAvailableEncryption(passphrase),
    )
    return data


def signer_from_pem(data: bytes, passphrase: bytes) -> CryptoSigner:
    """Load an encrypted PEM private key as a signer; wrong passphrase gives a clear error."""
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError("cannot decrypt private key: wrong passphrase or not a key") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyMaterialError(f"unsupported private key type {type(key).__name__}")
    return CryptoSigner(key)


def public_key_json(key: Key) -> str:
    return json.dumps({"keyid": key.keyid, **key.to_dict()}, indent=2, sort_keys=True)


def key_from_dict(data: Any) -> SSlibKey:
    """A TUF key from its JSON dictionary (``keyid`` included), checking the key id.

    The key id is recomputed from the key's content (TUF's canonical-JSON sha256), so a file
    naming another key's id is refused instead of silently trusted.
    """
    if not isinstance(data, dict):
        raise KeyMaterialError("public key JSON must be an object")
    fields = dict(data)
    claimed = fields.pop("keyid", None)
    try:
        key = SSlibKey.from_dict("0", dict(fields))
        keyid = compute_keyid(key)
        key = SSlibKey.from_dict(keyid, fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyMaterialError(f"not a TUF public key: {exc}") from exc
    if claimed is not None and claimed != keyid:
        raise KeyMaterialError(f"key id {str(claimed)[:12]} does not match the key's content")
    return key


def compute_keyid(key: Key) -> str:
    """TUF key id: sha256 of the canonical JSON of the key's public fields."""
    from securesystemslib.formats import encode_canonical

    canonical = encode_canonical(key.to_dict())
    assert isinstance(canonical, str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def load_public_key(path: Path) -> SSlibKey:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise KeyMaterialError(f"cannot read public key {path}: {exc}") from exc
    try:
        return key_from_dict(data)
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"cannot read public key {path}: {exc}") from exc


def write_private(path: Path, data: bytes) -> None:
    """Write secret bytes with mode 0600, atomically, never leaving a world-readable file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def save_keypair(signer: CryptoSigner, directory: Path, name: str, passphrase: bytes) -> KeyFiles:
    """Store ``name.key`` (encrypted PEM) and ``name.pub.json`` in ``directory``."""
    files = KeyFiles(directory / f"{name}.key", directory / f"{name}.pub.json")
    if files.private.exists():
        raise KeyMaterialError(f"refusing to overwrite existing key {files.private}")
    write_private(files.private, private_pem(signer, passphrase))
    files.public.write_text(public_key_json(signer.public_key))
    return files


def load_signer(directory: Path, name: str, passphrase: bytes) -> CryptoSigner:
    return load_signer_file(directory / f"{name}.key", passphrase)


def load_signer_file(path: Path, passphrase: bytes) -> CryptoSigner:
    """The signer kept in the encrypted PEM file ``path``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"cannot read private key {path}: {exc.strerror}") from exc
    return signer_from_pem(data, passphrase)


def load_or_create_signer(
    directory: Path, name: str, passphrase: bytes, key_type: KeyType = KeyType.ED25519
) -> CryptoSigner:
    """The signer stored under ``name``, generated and stored first if it does not exist yet."""
    if (directory / f"{name}.key").exists():
        return load_signer(directory, name, passphrase)
    signer = generate_signer(key_type)
    save_keypair(signer, directory, name, passphrase)
    return signer
