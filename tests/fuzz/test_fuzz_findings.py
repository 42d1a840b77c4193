"""What the fuzz targets (tests/fuzz/) found, each kept as a regression test: hostile input
must end in the parser's own documented error, never another exception."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner

from otaguard.bundle.format import MANIFEST, BundleError, BundleReader
from otaguard.director.manifest import PAYLOAD_TYPE, check_public_key, verify_manifest
from otaguard.errors import ManifestError

DEEP = b"[" * 5000 + b"]" * 5000  # deeper than the interpreter's recursion limit


def _tar(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def test_control_deep_json_is_a_recursion_error() -> None:
    with pytest.raises(RecursionError):
        json.loads(DEEP)


def test_bundle_manifest_nested_too_deep(tmp_path: Path) -> None:
    path = tmp_path / "b.tar"
    path.write_bytes(_tar({MANIFEST: DEEP}))
    with pytest.raises(BundleError, match="malformed"):
        BundleReader(path)


def test_bundle_member_cut_short(tmp_path: Path) -> None:
    """A member whose data runs past the end of the file (found by the fuzzer: tarfile's
    ReadError escaped ``getmembers``) is a BundleError when the bundle is opened."""
    manifest = json.dumps({"format": 1, "target": "t", "files": {"a": "00"}}).encode()
    raw = _tar({MANIFEST: manifest, "a": b"y" * 4000})
    path = tmp_path / "b.tar"
    path.write_bytes(raw[: 512 + 512 + 512 + 1024])
    with pytest.raises(BundleError, match=r"not a readable bundle|cut short"):
        BundleReader(path)


def test_signed_manifest_payload_nested_too_deep() -> None:
    """A device key signing a deeply nested payload: ManifestError, not RecursionError (the
    check-in handler maps only OTAGuard errors to 4xx)."""
    signer = CryptoSigner.generate_ed25519()
    key = signer.public_key
    key_json = check_public_key(key.to_dict() | {"keyid": key.keyid})
    env = Envelope(DEEP[:4000], PAYLOAD_TYPE, {})
    env.sign(signer)
    with pytest.raises(ManifestError, match="not JSON"):
        verify_manifest(env.to_dict(), key_json, device_id="dev-1")
