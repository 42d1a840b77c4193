from __future__ import annotations

import os
from pathlib import Path

import pytest

from otaguard.crypto.keys import (
    KeyType,
    generate_signer,
    load_or_create_signer,
    load_public_key,
    load_signer,
    private_pem,
    save_keypair,
    signer_from_pem,
)
from otaguard.errors import KeyMaterialError


@pytest.mark.parametrize("key_type", list(KeyType))
def test_keypair_roundtrip_signs_and_verifies(tmp_path: Path, key_type: KeyType) -> None:
    signer = generate_signer(key_type)
    files = save_keypair(signer, tmp_path, "k", b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in files.private.read_bytes()
    assert os.stat(files.private).st_mode & 0o777 == 0o600
    loaded = load_signer(tmp_path, "k", b"correct horse")
    pub = load_public_key(files.public)
    assert pub.keyid == signer.public_key.keyid
    sig = loaded.sign(b"payload")
    pub.verify_signature(sig, b"payload")
    with pytest.raises(Exception):
        pub.verify_signature(sig, b"other payload")


def test_wrong_passphrase_is_a_clear_error(tmp_path: Path) -> None:
    save_keypair(generate_signer(), tmp_path, "k", b"correct horse")
    with pytest.raises(KeyMaterialError, match="wrong passphrase"):
        load_signer(tmp_path, "k", b"wrong horse!")


def test_short_passphrase_and_overwrite_are_refused(tmp_path: Path) -> None:
    signer = generate_signer()
    with pytest.raises(KeyMaterialError, match="at least"):
        private_pem(signer, b"short")
    save_keypair(signer, tmp_path, "k", b"correct horse")
    before = (tmp_path / "k.key").read_bytes()
    with pytest.raises(KeyMaterialError, match="overwrite"):
        save_keypair(generate_signer(), tmp_path, "k", b"correct horse")
    assert (tmp_path / "k.key").read_bytes() == before


def test_load_or_create_reuses_existing_key(tmp_path: Path) -> None:
    a = load_or_create_signer(tmp_path, "k", b"correct horse")
    b = load_or_create_signer(tmp_path, "k", b"correct horse")
    assert a.public_key.keyid == b.public_key.keyid


def test_garbage_is_not_a_key() -> None:
    with pytest.raises(KeyMaterialError):
        signer_from_pem(b"-----BEGIN NONSENSE-----\n", b"correct horse")


def test_missing_public_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="cannot read public key"):
        load_public_key(tmp_path / "absent.pub.json")
