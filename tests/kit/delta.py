"""Delta test helpers: two similar simulated images, a patch between them published as a
maker-signed delta target (``repo/delta_targets.py``), and the server made to offer it."""

from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest

from otaguard.delta import encode
from otaguard.demo import HARDWARE, Demo
from otaguard.device.image import build_image
from otaguard.repo.delta_targets import make_delta_target
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.roles import TARGETS

SEGMENT = 1 << 20  # the smallest segment the format allows: several segments in small images


def similar_payloads(size: int, seed: int = 1) -> tuple[bytes, bytes]:
    """Two payloads of about ``size`` bytes that differ as firmware builds do: scattered
    small edits and one insertion."""
    rng = random.Random(seed)
    old = rng.randbytes(size)
    new = bytearray(old)
    for at in range(1000, size - 200, 40_000):
        new[at : at + 64] = rng.randbytes(64)
    new[size // 2 : size // 2] = rng.randbytes(3000)
    return old, bytes(new)


def images(size: int, seed: int = 1) -> tuple[bytes, bytes]:
    """Release 1.0.0 and 2.0.0 (security version 1) with similar payloads."""
    p1, p2 = similar_payloads(size, seed)
    return (
        build_image("1.0.0", HARDWARE, payload=p1),
        build_image("2.0.0", HARDWARE, security_version=1, payload=p2),
    )


def sign_and_publish(d: Demo) -> None:
    assert d.repo is not None
    assert d.api is not None
    for signer in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, signer)
    d.api.publish(d.repo)


def release_image(d: Demo, version: str, image: bytes, security_version: int = 0) -> str:
    """Add, sign and publish ``image`` as release ``version``; return its target path."""
    assert d.repo is not None
    name = f"{HARDWARE}/firmware-{version}.img"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image"
        path.write_bytes(image)
        d.repo.add_target(path, name, ReleaseInfo(version, (HARDWARE,), security_version))
    sign_and_publish(d)
    return name


def make_patch(old: bytes, new: bytes) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        a, b, out = Path(tmp) / "old", Path(tmp) / "new", Path(tmp) / "patch"
        a.write_bytes(old)
        b.write_bytes(new)
        encode(a, b, out, segment_size=SEGMENT, allow_full=False)
        return out.read_bytes()


def publish_delta(d: Demo, full_name: str, source: bytes, patch: bytes) -> str:
    """Sign ``patch`` as the delta target rebuilding ``full_name`` from ``source``; publish."""
    assert d.repo is not None
    full = d.repo.targets().signed.targets[full_name]
    target = make_delta_target(
        full,
        source_sha256=hashlib.sha256(source).hexdigest(),
        source_length=len(source),
        patch_sha256=hashlib.sha256(patch).hexdigest(),
        patch_length=len(patch),
    )
    md = d.repo.targets_metadata(TARGETS)
    staged = d.repo.staged_dir / target.path
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(patch)
    md.signed.targets[target.path] = target
    d.repo.save_new_version(TARGETS, md)
    sign_and_publish(d)
    return target.path


def offer_delta(monkeypatch: pytest.MonkeyPatch, full_name: str, delta_path: str) -> None:
    """The server's director names ``delta_path`` in every assignment of ``full_name`` (what
    the server does when a device reports the delta's source image; here for every device,
    so the device's own checks are what is tested)."""
    import otaguard.server.checkin as checkin

    real = getattr(checkin, "sign_assignment")  # noqa: B009 (not re-exported for mypy)

    def signing(*args: Any, **kwargs: Any) -> bytes:
        if kwargs["target"].path == full_name:
            kwargs["delta_path"] = delta_path
        signed: bytes = real(*args, **kwargs)
        return signed

    monkeypatch.setattr(checkin, "sign_assignment", signing)
