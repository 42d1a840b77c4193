"""The split difference stream (codec 3): operand positions found the same way piece by piece
as in one pass, round trips through encoder and decoder (resume included), and hand-made
malformed split streams refused with ``DeltaFormatError`` next to a control that applies."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otaguard.delta import Checkpoint, DeltaDecoder, encode
from otaguard.delta import codec as codec_mod
from otaguard.delta.codec import SPLIT_PREFIX, compress_split
from otaguard.delta.container import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    Algorithm,
    Codec,
    Header,
    Segment,
    StreamDesc,
    pack_header,
    pack_segment,
)
from otaguard.delta.operands import OperandScan, merge, split
from otaguard.delta.ops import Op, encode_ops
from otaguard.errors import DeltaFormatError

from .kit import apply_bytes, real_binary, rebuilt

X86ISH = st.binary(max_size=300).map(
    lambda b: bytes(b"\xe8\xe9\x0f\x85\x8b\x05\x00\x15\x48"[x % 9] for x in b)
)


def _joined(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


@settings(max_examples=200, deadline=None)
@given(source=X86ISH, cuts=st.lists(st.integers(1, 9), max_size=60))
def test_piecewise_scan_equals_one_pass(source: bytes, cuts: list[int]) -> None:
    whole = OperandScan().scan(source)
    scan, got, pos = OperandScan(), [], 0
    for k in [*cuts, len(source)]:
        piece = source[pos : pos + k]
        got += [(a + pos, b + pos) for a, b in scan.scan(piece)]
        pos += len(piece)
    assert _joined(got) == _joined(whole)
    for a, b in whole:
        assert 0 <= a < b <= len(source)
        assert b - a <= 4


@settings(max_examples=100, deadline=None)
@given(source=X86ISH, seed=st.integers(0, 1000))
def test_split_then_merge_is_identity(source: bytes, seed: int) -> None:
    diff = random.Random(seed).randbytes(len(source))
    fields, rest = split(source, diff)
    assert len(fields) + len(rest) == len(diff)
    assert merge(OperandScan().scan(source), fields, rest) == diff


def test_operands_are_found_where_x86_puts_them() -> None:
    code = b"\x90\xe8ABCD\x48\x8b\x05EFGH\x0f\x84IJKL\x90"
    assert OperandScan().scan(code) == [(2, 6), (9, 13), (15, 19)]


@pytest.mark.parametrize("split_difference", [True, False])
def test_rebuilt_binary_round_trips_split_or_not(tmp_path: Path, split_difference: bool) -> None:
    old = real_binary()
    new = rebuilt(old, seed=21)
    (tmp_path / "o").write_bytes(old)
    (tmp_path / "n").write_bytes(new)
    encode(tmp_path / "o", tmp_path / "n", tmp_path / "p", split_difference=split_difference)
    patch = (tmp_path / "p").read_bytes()
    decoder = DeltaDecoder(io.BytesIO(old), io.BytesIO(patch))
    want = Codec.SPLIT_LZMA2 if split_difference else Codec.LZMA2
    assert decoder.segment(0).diff.codec == want
    assert apply_bytes(old, patch) == new


def test_split_patch_resumes_at_every_segment(tmp_path: Path) -> None:
    rng = random.Random(3)
    old = (real_binary() * 40)[: 5 << 19]
    new = bytearray(old)
    for _ in range(300):
        at = rng.randrange(len(new) - 4)
        new[at : at + 4] = rng.randbytes(4)
    (tmp_path / "o").write_bytes(old)
    (tmp_path / "n").write_bytes(bytes(new))
    encode(
        tmp_path / "o",
        tmp_path / "n",
        tmp_path / "p",
        segment_size=1 << 20,
        split_difference=True,
        matchers=("bsdiff",),
    )
    patch = (tmp_path / "p").read_bytes()
    segments = DeltaDecoder(None, io.BytesIO(patch)).header.segments
    assert segments == 3  # 2.5 MiB in 1 MiB segments
    for k in range(segments):
        seg = DeltaDecoder(None, io.BytesIO(patch)).segment(k)
        written = bytes(new[: seg.output_offset])
        out = io.BytesIO()
        out.write(written)
        DeltaDecoder(io.BytesIO(old), io.BytesIO(patch)).apply(
            out.write, resume=Checkpoint(k, seg.output_offset), written=io.BytesIO(written)
        )
        assert out.getvalue() == bytes(new)


SOURCE = (b"\x90\xe8\x10\x00\x00\x00\x48\x8b\x05\x20\x00\x00\x00" * 40)[:512]


def split_patch(prefix_tweak: bytes | None = None, stream_slot: int = 1, cut: int = 0) -> bytes:
    """One segment: ADD over the whole SOURCE with a split difference stream."""
    rng = random.Random(9)
    diff = bytes(rng.choice((0, 0, 0, 1, 0xFF)) for _ in SOURCE)
    target = bytes((a + b) & 0xFF for a, b in zip(SOURCE, diff, strict=True))
    fields, rest = split(SOURCE, diff)
    c, props, dict_log2, data = compress_split(fields, rest)
    assert c == Codec.SPLIT_LZMA2
    if prefix_tweak is not None:
        data = prefix_tweak + data[SPLIT_PREFIX.size :]
    if cut:
        data = data[:-cut]
    ops = encode_ops([(Op.ADD, len(SOURCE))])
    header = Header(
        Algorithm.DELTA,
        1,
        len(SOURCE),
        hashlib.sha256(SOURCE).digest(),
        len(target),
        hashlib.sha256(target).digest(),
    )
    at = HEADER_SIZE + SEGMENT_SIZE
    stored = StreamDesc(Codec.STORED, 0, 0, at, len(ops), len(ops))
    split_desc = StreamDesc(c, props, dict_log2, at + len(ops), len(data), len(diff))
    empty = StreamDesc(Codec.STORED, 0, 0, at + len(ops) + len(data), 0, 0)
    descs = [stored, split_desc, empty]
    if stream_slot != 1:  # a split descriptor where only whole streams may be
        descs[stream_slot] = StreamDesc(Codec.SPLIT_LZMA2, props, dict_log2, 0, 0, 0)
    seg = Segment(0, len(target), 0, *descs)
    return pack_header(header) + pack_segment(seg) + ops + data


def apply_split(patch: bytes) -> bytes:
    out = io.BytesIO()
    DeltaDecoder(io.BytesIO(SOURCE), io.BytesIO(patch)).apply(out.write)
    return out.getvalue()


def test_control_hand_made_split_patch_applies() -> None:
    out = apply_split(split_patch())
    assert len(out) == len(SOURCE)
    assert out != SOURCE


def _prefix(f_comp: int, f_raw: int, props: int) -> bytes:
    return SPLIT_PREFIX.pack(f_comp, f_raw, props)


def _real_prefix() -> tuple[int, int, int]:
    data = split_patch()
    at = HEADER_SIZE + SEGMENT_SIZE + len(encode_ops([(Op.ADD, len(SOURCE))]))
    return SPLIT_PREFIX.unpack(data[at : at + SPLIT_PREFIX.size])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f, r, p: _prefix(f + 10_000, r, p), "do not fit"),
        (lambda f, r, p: _prefix(f, len(SOURCE) + 1, p), "do not fit"),
        (lambda f, r, p: _prefix(f, r, 255), "properties"),
        (lambda f, r, p: _prefix(f, r + 1, p), "stream"),  # one operand byte more claimed
        (lambda f, r, p: _prefix(f - 1, r, p), "stream|corrupt"),  # parts cut in the wrong place
    ],
)
def test_bad_split_prefixes_are_refused(change: object, message: str) -> None:
    f, r, p = _real_prefix()
    with pytest.raises(DeltaFormatError, match=message):
        apply_split(split_patch(prefix_tweak=change(f, r, p)))  # type: ignore[operator]


def test_truncated_split_streams_are_refused() -> None:
    for cut in (1, 5):
        with pytest.raises(DeltaFormatError):
            apply_split(split_patch(cut=cut))


@pytest.mark.parametrize("slot", [0, 2])
def test_split_codec_only_for_the_difference_stream(slot: int) -> None:
    with pytest.raises(DeltaFormatError, match="only for differences"):
        apply_split(split_patch(stream_slot=slot))


def test_split_stream_shorter_than_its_prefix_is_refused() -> None:
    desc = StreamDesc(Codec.SPLIT_LZMA2, 0, 16, 0, SPLIT_PREFIX.size - 1, 10)
    with pytest.raises(DeltaFormatError, match="prefix"):
        codec_mod.SplitReader(io.BytesIO(bytes(64)), desc)
