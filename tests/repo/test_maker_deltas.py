"""The maker builds delta targets (``repo/maker_deltas.py``, ``otaguard release add
--delta-from`` / ``otaguard release delta``): from an earlier release of the same hardware in the
local repository, diffed decompressed, bound to both images' hashes, signed like any target,
and skipped when it does not pay."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest
import zstandard
from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.crypto.keys import generate_signer
from otaguard.delta import DeltaDecoder
from otaguard.errors import RepositoryError
from otaguard.repo.delta_targets import parse_delta_target
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.maker import MakerRepository
from otaguard.repo.maker_deltas import add_deltas
from otaguard.repo.roles import ROOT, TARGETS

HW = "board"


def images() -> tuple[bytes, bytes, bytes]:
    """v1, v2 (v1 with a few changes: a delta pays), v3 (unrelated: it does not)."""
    rng = random.Random(14)
    v1 = rng.randbytes(256 * 1024)
    v2 = bytearray(v1)
    for at in (1000, 50_000, 200_000):
        v2[at : at + 64] = rng.randbytes(64)
    return v1, bytes(v2), rng.randbytes(256 * 1024)


def zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=3).compress(data)


@pytest.fixture
def repo(tmp_path: Path) -> MakerRepository:
    root, targets = generate_signer(), generate_signer()
    r = MakerRepository.init(
        tmp_path / "repo",
        root_keys=[root.public_key],
        root_threshold=1,
        targets_keys=[targets.public_key],
        targets_threshold=1,
        snapshot_key=generate_signer().public_key,
        timestamp_key=generate_signer().public_key,
    )
    r.sign(ROOT, root)
    return r


def add(repo: MakerRepository, tmp: Path, version: str, data: bytes) -> str:
    path = tmp / f"fw-{version}.img.zst"
    path.write_bytes(zst(data))
    name = f"{HW}/fw-{version}.img.zst"
    repo.add_target(path, name, ReleaseInfo(version, (HW,)))
    return name


def test_delta_from_an_earlier_compressed_release_rebuilds_the_new_image(
    repo: MakerRepository, tmp_path: Path
) -> None:
    v1, v2, _ = images()
    add(repo, tmp_path, "1", v1)
    name = add(repo, tmp_path, "2", v2)
    before = repo.targets().signed.version
    (outcome,) = add_deltas(repo, name, ["1"])
    assert outcome.target is not None, outcome.message
    assert outcome.role == TARGETS
    assert repo.targets().signed.version == before + 1  # a new version to sign
    delta = parse_delta_target(outcome.target)
    assert delta.source_sha256 == hashlib.sha256(v1).hexdigest()  # decompressed, as installed
    assert delta.source_length == len(v1)
    assert delta.target_sha256 == hashlib.sha256(v2).hexdigest()
    assert delta.target_path == name
    staged = repo.staged_dir / outcome.target.path
    assert hashlib.sha256(staged.read_bytes()).hexdigest() == outcome.target.hashes["sha256"]
    assert outcome.target.length < len(zst(v2)) / 10
    out = io.BytesIO()
    with staged.open("rb") as patch:
        DeltaDecoder(io.BytesIO(v1), patch).apply(out.write)
    assert out.getvalue() == v2


def test_delta_that_does_not_pay_is_skipped_and_changes_nothing(
    repo: MakerRepository, tmp_path: Path
) -> None:
    v1, _, v3 = images()
    add(repo, tmp_path, "1", v1)
    name = add(repo, tmp_path, "3", v3)
    before = repo.targets().signed.version
    (outcome,) = add_deltas(repo, name, ["1"])
    assert outcome.target is None
    assert "does not pay" in outcome.message
    assert repo.targets().signed.version == before
    assert set(repo.all_targets()) == {f"{HW}/fw-1.img.zst", name}


def test_unknown_version_or_other_hardware_is_refused(
    repo: MakerRepository, tmp_path: Path
) -> None:
    v1, v2, _ = images()
    other = tmp_path / "other.img"
    other.write_bytes(v1)
    repo.add_target(other, "other-board/fw-1.img", ReleaseInfo("1", ("other-board",)))
    name = add(repo, tmp_path, "2", v2)
    with pytest.raises(RepositoryError, match="no release 1 for"):
        add_deltas(repo, name, ["1"])  # release 1 exists, but for other hardware
    with pytest.raises(RepositoryError, match="no release 7"):
        add_deltas(repo, name, ["7"])


def test_a_tampered_local_source_image_is_refused(repo: MakerRepository, tmp_path: Path) -> None:
    v1, v2, _ = images()
    old = add(repo, tmp_path, "1", v1)
    name = add(repo, tmp_path, "2", v2)
    (repo.staged_dir / old).write_bytes(zst(v1 + b"!"))
    with pytest.raises(RepositoryError, match="does not match its signed sha256"):
        add_deltas(repo, name, ["1"])


def test_cli_release_add_with_delta_from(repo: MakerRepository, tmp_path: Path) -> None:
    v1, v2, _ = images()
    add(repo, tmp_path, "1", v1)
    image = tmp_path / "fw-2.img.zst"
    image.write_bytes(zst(v2))
    args = ["release", "add", image, "--repo", repo.path, "--version", "2", "--hardware", HW]
    result = CliRunner().invoke(
        app, [str(a) for a in [*args, "--security-version", "0", "--delta-from", "1"]]
    )
    assert result.exit_code == 0, result.output
    assert ".otadelta" in result.output
    deltas = [n for n in repo.all_targets() if n.endswith(".otadelta")]
    assert deltas == [f"{HW}/fw-2.img.zst.from-{hashlib.sha256(v1).hexdigest()[:16]}.otadelta"]
    again = CliRunner().invoke(
        app,
        ["release", "delta", f"{HW}/fw-2.img.zst", "--repo", str(repo.path), "--delta-from", "1"],
    )
    assert again.exit_code == 2  # already there: releases are immutable
    assert "already exists" in again.output
