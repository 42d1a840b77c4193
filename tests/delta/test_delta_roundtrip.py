"""Encode/apply round trips on real binaries, the full-image fallback, segments and resume."""

from __future__ import annotations

import hashlib
import io
import lzma
import random
from pathlib import Path

import pytest

from otaguard.delta import Algorithm, Checkpoint, DeltaDecoder, encode
from otaguard.delta.container import HEADER_SIZE
from otaguard.errors import DeltaFormatError, DeltaSourceMismatchError, DeltaTargetMismatchError

from .kit import apply_bytes, make_patch, real_binary, rebuilt


def test_rebuilt_binary_round_trips_and_is_small(tmp_path: Path) -> None:
    old = real_binary()
    new = rebuilt(old)
    _, _, patch = make_patch(tmp_path, old, new)
    data = patch.read_bytes()
    assert apply_bytes(old, data) == new
    assert DeltaDecoder(None, io.BytesIO(data)).info.algorithm == Algorithm.DELTA
    # far below the image compressed alone: the delta carries only what changed
    assert len(data) < len(lzma.compress(new, preset=9)) / 5


def test_info_binds_source_and_target_hashes(tmp_path: Path) -> None:
    old, new = real_binary(), rebuilt(real_binary())
    (tmp_path / "a").write_bytes(old)
    (tmp_path / "b").write_bytes(new)
    info = encode(tmp_path / "a", tmp_path / "b", tmp_path / "p")
    assert info.source_sha256 == hashlib.sha256(old).hexdigest()
    assert info.target_sha256 == hashlib.sha256(new).hexdigest()
    assert (info.source_size, info.target_size) == (len(old), len(new))
    assert info.patch_size == (tmp_path / "p").stat().st_size
    custom = info.custom()["delta"]
    assert custom == {
        "format": 1,
        "algorithm": "delta",
        "source": {"length": len(old), "sha256": info.source_sha256},
        "target": {"length": len(new), "sha256": info.target_sha256},
    }


def test_unrelated_real_binaries_round_trip(tmp_path: Path) -> None:
    old, new = real_binary("bz2"), real_binary("lzma")
    _, _, patch = make_patch(tmp_path, old, new)
    assert apply_bytes(old, patch.read_bytes()) == new


def test_incompressible_new_image_falls_back_to_full(tmp_path: Path) -> None:
    rng = random.Random(5)
    old = rng.randbytes(60_000)
    new = rng.randbytes(60_000)  # unrelated, incompressible: a delta cannot pay
    _, _, patch = make_patch(tmp_path, old, new)
    data = patch.read_bytes()
    info = DeltaDecoder(None, io.BytesIO(data)).info
    assert info.algorithm == Algorithm.FULL
    assert not info.needs_source
    assert len(data) <= len(new) + HEADER_SIZE + 200
    assert apply_bytes(None, data) == new  # no source needed
    assert apply_bytes(rng.randbytes(10), data) == new  # nor read


def test_no_full_keeps_the_delta(tmp_path: Path) -> None:
    rng = random.Random(6)
    old, new = rng.randbytes(5000), rng.randbytes(5000)
    _, _, patch = make_patch(tmp_path, old, new, allow_full=False)
    data = patch.read_bytes()
    assert DeltaDecoder(None, io.BytesIO(data)).info.algorithm == Algorithm.DELTA
    assert apply_bytes(old, data) == new


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"", b""), (b"abc", b""), (b"", b"xyz" * 100), (b"same" * 999, b"same" * 999)],
)
def test_edge_sizes(tmp_path: Path, old: bytes, new: bytes) -> None:
    _, _, patch = make_patch(tmp_path, old, new)
    assert apply_bytes(old, patch.read_bytes()) == new


def _image(rng: random.Random, fs: bytes, size: int) -> bytes:
    return fs + rng.randbytes(size - len(fs))


def test_multi_segment_image_with_unchanged_tail(tmp_path: Path) -> None:
    """A 3.5 MiB image in 1 MiB segments: files changed at the front, the rest the same."""
    old_fs = real_binary()
    new_fs = rebuilt(old_fs)
    old = _image(random.Random(7), old_fs, 3_500_000)
    new = new_fs + old[len(new_fs) :]
    _, _, patch = make_patch(tmp_path, old, new, segment_size=1 << 20)
    data = patch.read_bytes()
    assert DeltaDecoder(None, io.BytesIO(data)).info.segments == 4
    assert apply_bytes(old, data) == new
    assert len(data) < 100_000


def test_resume_from_every_checkpoint_gives_the_same_image(tmp_path: Path) -> None:
    old = _image(random.Random(8), real_binary(), 3_200_000)
    new = bytearray(old)
    new[100:200] = b"x" * 100
    new[2_500_000:2_500_050] = b"y" * 50
    new = bytes(new)
    _, _, patch = make_patch(tmp_path, old, new, segment_size=1 << 20)
    checkpoints: list[Checkpoint] = []
    full = io.BytesIO()
    with patch.open("rb") as p:
        DeltaDecoder(io.BytesIO(old), p).apply(full.write, on_checkpoint=checkpoints.append)
    assert full.getvalue() == new
    assert [c.segment for c in checkpoints] == [1, 2, 3, 4]
    for cp in checkpoints[:-1]:
        slot = io.BytesIO(new[: cp.output_offset] + b"\xff" * 999)  # rest of the slot: garbage
        slot.seek(cp.output_offset)
        with patch.open("rb") as p:
            DeltaDecoder(io.BytesIO(old), p).apply(slot.write, resume=cp, written=slot)
        assert slot.getvalue()[: len(new)] == new


def test_resume_with_a_wrong_written_prefix_fails_the_hash(tmp_path: Path) -> None:
    old = _image(random.Random(9), b"", 2_500_000)
    new = old[:1000] + b"z" + old[1001:]
    _, _, patch = make_patch(tmp_path, old, new, segment_size=1 << 20)
    slot = io.BytesIO(b"\x00" * (1 << 20))
    slot.seek(1 << 20)
    with patch.open("rb") as p, pytest.raises(DeltaTargetMismatchError):
        DeltaDecoder(io.BytesIO(old), p).apply(
            slot.write, resume=Checkpoint(1, 1 << 20), written=slot
        )


def test_checkpoint_off_a_segment_boundary_is_refused(tmp_path: Path) -> None:
    old = _image(random.Random(10), b"", 2_500_000)
    _, _, patch = make_patch(tmp_path, old, old[::-1], segment_size=1 << 20)
    with patch.open("rb") as p, pytest.raises(DeltaFormatError):
        DeltaDecoder(io.BytesIO(old), p).apply(
            io.BytesIO().write, resume=Checkpoint(1, 12345), written=io.BytesIO(old)
        )


def test_wrong_source_size_is_refused_before_decoding(tmp_path: Path) -> None:
    old, new = real_binary(), rebuilt(real_binary())
    _, _, patch = make_patch(tmp_path, old, new)
    with patch.open("rb") as p, pytest.raises(DeltaSourceMismatchError):
        DeltaDecoder(io.BytesIO(old + b"!"), p)


def test_same_size_other_source_fails_verify_and_the_final_hash(tmp_path: Path) -> None:
    old, new = real_binary(), rebuilt(real_binary())
    _, _, patch = make_patch(tmp_path, old, new)
    other = bytearray(old)
    other[len(other) // 2] ^= 0xFF
    with patch.open("rb") as p:
        decoder = DeltaDecoder(io.BytesIO(bytes(other)), p)
        with pytest.raises(DeltaSourceMismatchError):
            decoder.verify_source()
        with pytest.raises(DeltaTargetMismatchError):
            decoder.apply(io.BytesIO().write)
    with patch.open("rb") as p:
        DeltaDecoder(io.BytesIO(old), p).verify_source()  # control: the right source passes


def test_expected_hashes_from_signed_metadata_are_enforced(tmp_path: Path) -> None:
    old, new = real_binary(), rebuilt(real_binary())
    _, _, patch = make_patch(tmp_path, old, new)
    good_target = hashlib.sha256(new).hexdigest()
    good_source = hashlib.sha256(old).hexdigest()
    with patch.open("rb") as p:
        DeltaDecoder(
            io.BytesIO(old),
            p,
            expected_target_sha256=good_target,
            expected_source_sha256=good_source,
        )
        with pytest.raises(DeltaTargetMismatchError):
            DeltaDecoder(io.BytesIO(old), p, expected_target_sha256="0" * 64)
        with pytest.raises(DeltaSourceMismatchError):
            DeltaDecoder(io.BytesIO(old), p, expected_source_sha256="0" * 64)


def test_delta_patch_without_source_is_refused_at_apply(tmp_path: Path) -> None:
    old, new = real_binary(), rebuilt(real_binary())
    _, _, patch = make_patch(tmp_path, old, new)
    with patch.open("rb") as p, pytest.raises(DeltaSourceMismatchError):
        DeltaDecoder(None, p).apply(io.BytesIO().write)
