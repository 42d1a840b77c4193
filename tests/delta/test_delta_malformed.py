"""Hand-made malformed patches: each limit or consistency check refuses with DeltaFormatError
(or the mismatch errors), and the same patch with the fault removed applies (control)."""

from __future__ import annotations

import hashlib
import io
import struct

import pytest

from otaguard.delta import DeltaDecoder
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
from otaguard.delta.ops import Op, encode_ops, encode_varint, iter_ops, unzigzag, zigzag
from otaguard.errors import DeltaError, DeltaFormatError, DeltaTargetMismatchError

SOURCE = bytes(range(256)) * 8  # 2 KiB


def raw_patch(
    ops: bytes,
    diff: bytes,
    extra: bytes,
    target: bytes,
    *,
    algorithm: Algorithm = Algorithm.DELTA,
    source: bytes = SOURCE,
    tweak_desc: dict[str, int] | None = None,
    trailing: bytes = b"",
) -> bytes:
    """One segment, stored streams: lets a test write any instruction it likes."""
    header = Header(
        algorithm,
        1,
        len(source),
        hashlib.sha256(source).digest(),
        len(target),
        hashlib.sha256(target).digest(),
    )
    at = HEADER_SIZE + SEGMENT_SIZE
    descs = []
    for data in (ops, diff, extra):
        descs.append(StreamDesc(Codec.STORED, 0, 0, at, len(data), len(data)))
        at += len(data)
    if tweak_desc:
        name = tweak_desc.pop("stream")
        i = ("ops", "diff", "extra").index(name)  # type: ignore[arg-type]
        d = descs[i]
        descs[i] = StreamDesc(**{**d.__dict__, **tweak_desc})
    seg = Segment(0, len(target), 0, *descs)
    return pack_header(header) + pack_segment(seg) + ops + diff + extra + trailing


def apply(patch: bytes, source: bytes | None = SOURCE) -> bytes:
    out = io.BytesIO()
    DeltaDecoder(io.BytesIO(source) if source is not None else None, io.BytesIO(patch)).apply(
        out.write
    )
    return out.getvalue()


def test_control_hand_made_patch_applies() -> None:
    diff = bytes([1] * 10)
    target = bytes((b + 1) & 255 for b in SOURCE[100:110]) + b"NEW" + SOURCE[50:60]
    ops = encode_ops([(Op.SEEK, 100), (Op.ADD, 10), (Op.INSERT, 3), (Op.SEEK, -60), (Op.COPY, 10)])
    assert apply(raw_patch(ops, diff, b"NEW", target)) == target


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        (encode_ops([(Op.SEEK, -1), (Op.COPY, 4)]), "outside the source"),
        (encode_ops([(Op.SEEK, len(SOURCE) + 1)]), "outside the source"),
        (encode_ops([(Op.SEEK, len(SOURCE) - 2), (Op.COPY, 4)]), "beyond the end"),
        (encode_ops([(Op.COPY, 5)]), "more than the segment"),
        (encode_ops([(Op.COPY, 3)]), "less than the segment"),
        (encode_varint(Op.COPY), "zero bytes"),
        (b"\xff" * 11, "longer than 64 bits"),
        (b"\x90", "inside an instruction"),
        (encode_ops([(Op.INSERT, 4)]), "shorter than its instructions"),
    ],
)
def test_bad_instructions(ops: bytes, message: str) -> None:
    with pytest.raises(DeltaFormatError, match=message):
        apply(raw_patch(ops, b"", b"", SOURCE[:4]))


def test_full_patch_may_not_touch_the_source() -> None:
    ops = encode_ops([(Op.COPY, 4)])
    with pytest.raises(DeltaFormatError, match="full-image"):
        apply(raw_patch(ops, b"", b"", SOURCE[:4], algorithm=Algorithm.FULL), None)
    ok = raw_patch(encode_ops([(Op.INSERT, 4)]), b"", b"abcd", b"abcd", algorithm=Algorithm.FULL)
    assert apply(ok, None) == b"abcd"


def test_unused_stream_bytes_are_refused() -> None:
    ops = encode_ops([(Op.COPY, 4)])
    with pytest.raises(DeltaFormatError, match="longer than its instructions use"):
        apply(raw_patch(ops, b"", b"abc", SOURCE[:4]))


def test_wrong_target_hash_is_refused() -> None:
    ops = encode_ops([(Op.COPY, 4)])
    patch = bytearray(raw_patch(ops, b"", b"", SOURCE[:4]))
    patch[HEADER_SIZE - 1] ^= 1  # last byte of the target sha256
    with pytest.raises(DeltaTargetMismatchError):
        apply(bytes(patch))


@pytest.mark.parametrize(
    ("tweak", "message"),
    [
        (
            {"stream": "extra", "raw_len": 1 << 40, "codec": 1, "dict_log2": 16},
            "longer than the segment",
        ),
        (
            {"stream": "ops", "raw_len": 1 << 40, "codec": 1, "dict_log2": 16},
            "instruction stream too long",
        ),
        ({"stream": "ops", "comp_len": 1 << 40}, "stored stream whose lengths differ"),
        ({"stream": "ops", "offset": 0}, "not laid out in order"),
        ({"stream": "diff", "codec": 1, "dict_log2": 30}, "dictionary"),
        ({"stream": "diff", "codec": 1, "dict_log2": 16, "lzma_props": 255}, "properties"),
        ({"stream": "diff", "codec": 9}, "unknown stream codec"),
    ],
)
def test_bad_stream_descriptors(tweak: dict[str, int], message: str) -> None:
    ops = encode_ops([(Op.COPY, 4)])
    with pytest.raises(DeltaFormatError, match=message):
        apply(raw_patch(ops, b"", b"", SOURCE[:4], tweak_desc=dict(tweak)))


def test_trailing_bytes_after_the_streams_are_refused() -> None:
    ops = encode_ops([(Op.COPY, 4)])
    with pytest.raises(DeltaFormatError, match="does not match its segment table"):
        apply(raw_patch(ops, b"", b"", SOURCE[:4], trailing=b"x"))


def _header_with(**fields: int) -> bytes:
    values = {"segments": 1, "ssize": len(SOURCE), "tsize": 4, "version": 1, "alg": 1}
    values.update(fields)
    return struct.pack(
        "<8sHBBIQ32sQ32s",
        b"OTAGDLTA",
        values["version"],
        values["alg"],
        0,
        values["segments"],
        values["ssize"],
        b"\0" * 32,
        values["tsize"],
        b"\0" * 32,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"NOTADLTA" + b"\0" * 88, "bad magic"),
        (_header_with(version=2), "version"),
        (_header_with(alg=7), "algorithm"),
        (_header_with(tsize=1 << 50), "1 TiB"),
        (_header_with(segments=1 << 31, tsize=1 << 30), "segments"),
        (_header_with(segments=0), "segments"),
        (_header_with(), "truncated inside its segment table"),
    ],
)
def test_bad_headers(data: bytes, message: str) -> None:
    with pytest.raises(DeltaFormatError, match=message):
        DeltaDecoder(io.BytesIO(SOURCE), io.BytesIO(data))


def test_every_error_is_a_delta_error() -> None:
    assert issubclass(DeltaFormatError, DeltaError)
    assert issubclass(DeltaTargetMismatchError, DeltaError)


def test_varint_and_zigzag_round_trip() -> None:
    values = [0, 1, -1, 63, -64, 1 << 40, -(1 << 40), (1 << 61) - 1]
    assert [unzigzag(zigzag(v)) for v in values] == values
    ops = [(Op.SEEK, v) for v in values] + [(Op.ADD, 1), (Op.COPY, 1 << 40), (Op.INSERT, 300)]
    assert list(iter_ops(encode_ops(ops))) == ops
    with pytest.raises(ValueError):
        encode_ops([(Op.ADD, 0)])
