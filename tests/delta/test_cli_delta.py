"""``otaguard delta create|apply|info`` on real files, and their one-line refusals."""

from __future__ import annotations

import random
from pathlib import Path

from typer.testing import CliRunner

from otaguard.cli.main import app

from .kit import real_binary, rebuilt

runner = CliRunner()


def _files(tmp: Path) -> tuple[Path, Path, Path]:
    old, new = tmp / "v1.img", tmp / "v2.img"
    old.write_bytes(real_binary())
    new.write_bytes(rebuilt(real_binary()))
    return old, new, tmp / "v1-v2.delta"


def test_create_apply_info(tmp_path: Path) -> None:
    old, new, patch = _files(tmp_path)
    made = runner.invoke(app, ["delta", "create", str(old), str(new), str(patch)])
    assert made.exit_code == 0, made.output
    assert made.output.startswith("delta: ")
    out = tmp_path / "rebuilt.img"
    applied = runner.invoke(app, ["delta", "apply", str(old), str(patch), str(out)])
    assert applied.exit_code == 0, applied.output
    assert out.read_bytes() == new.read_bytes()
    shown = runner.invoke(app, ["delta", "info", str(patch)])
    assert shown.exit_code == 0
    assert "target sha256" in shown.output


def test_apply_to_another_old_image_fails_with_one_line(tmp_path: Path) -> None:
    old, new, patch = _files(tmp_path)
    assert runner.invoke(app, ["delta", "create", str(old), str(new), str(patch)]).exit_code == 0
    other = tmp_path / "other.img"
    data = bytearray(old.read_bytes())
    data[5000] ^= 1  # same size, one bit off
    other.write_bytes(bytes(data))
    out = tmp_path / "out.img"
    result = runner.invoke(app, ["delta", "apply", str(other), str(patch), str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: the source image is not the one this patch was made from [delta_source]"
    ]
    assert not out.exists()  # nothing half-written
    shorter = tmp_path / "short.img"
    shorter.write_bytes(old.read_bytes()[:-1])
    result = runner.invoke(app, ["delta", "apply", str(shorter), str(patch), str(out)])
    assert result.exit_code == 2
    assert "[delta_source]" in result.output


def test_apply_a_malformed_patch_fails_with_one_line(tmp_path: Path) -> None:
    old, new, patch = _files(tmp_path)
    assert runner.invoke(app, ["delta", "create", str(old), str(new), str(patch)]).exit_code == 0
    data = bytearray(patch.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "bad.delta"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.img"
    result = runner.invoke(app, ["delta", "apply", str(old), str(bad), str(out)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")
    assert "[delta_" in result.output
    assert not out.exists()
    junk = tmp_path / "junk.delta"
    junk.write_bytes(random.Random(1).randbytes(300))
    result = runner.invoke(app, ["delta", "apply", str(old), str(junk), str(out)])
    assert result.exit_code == 2
    assert result.output.strip() == "error: not an OTAGuard delta patch (bad magic) [delta_format]"
