"""The patch container: header and segment table, packed and parsed with every length checked.

Why a format of our own: VCDIFF (RFC 3284, xdelta3's format) is the one standard delta format,
but its instructions are exact copies and adds with a fixed code table and only weak secondary
compression; our gain comes from bsdiff-style *approximate* matches (source bytes plus a mostly
zero difference) with each stream compressed by LZMA2 on its own, and from segments a device can
resume at. BSDIFF40 has neither hashes, sizes nor resumable segments and fixes bzip2. So the
container is ours, and small; everything in it is little-endian.

Header (``HEADER_SIZE`` = 96 bytes)::

    magic      8  b"OTAGDLTA"
    version    2  FORMAT_VERSION (1)
    algorithm  1  Algorithm: 1 = delta (needs the source), 2 = full (image only, no source)
    reserved   1  0
    segments   4  number of segment records
    source     8 + 32  size, sha256 of the image the patch applies to
    target     8 + 32  size, sha256 of the image the patch rebuilds

Then ``segments`` fixed-size records (``SEGMENT_SIZE`` = 108 bytes)::

    output_offset, output_len, source_start     3 x u64
    3 stream descriptors (ops, diff, extra), each:
        codec u8, lzma_props u8, dict_log2 u8, reserved u8, offset u64, comp_len u64, raw_len u64
    codec: 0 stored, 1 raw LZMA2, 2 x86 BCJ + LZMA2, 3 (difference stream only, added after
    the first patches were made; older decoders refuse it as an unknown codec) split: a 17-byte
    prefix (operand part's comp_len u64 and raw_len u64, its LZMA properties u8), the operand
    part, then the rest, both raw LZMA2 (``codec.SplitReader``, ``operands.py``)

Then the streams, in segment order and ops, diff, extra order, exactly tiling the rest of the
file. A segment's streams decode independently of every other segment, so an apply cut by a
power failure resumes at the start of the segment it was in. What the streams mean is in
``ops.py`` and ``decoder.py``.

This module does no I/O: bytes in, checked records out (or ``DeltaFormatError``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from otaguard.errors import DeltaFormatError

MAGIC = b"OTAGDLTA"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<8sHBBIQ32sQ32s")
_STREAM = struct.Struct("<BBBBQQQ")
_SEGMENT_HEAD = struct.Struct("<QQQ")
HEADER_SIZE = _HEADER.size
SEGMENT_SIZE = _SEGMENT_HEAD.size + 3 * _STREAM.size

MAX_IMAGE_SIZE = 1 << 40  # 1 TiB: far above any slot, far below what a u64 lets a liar claim
MIN_SEGMENT_OUTPUT = 1 << 20  # a table may not have more segments than one per MiB of output
MAX_SEGMENTS = MAX_IMAGE_SIZE // MIN_SEGMENT_OUTPUT
MIN_DICT_LOG2 = 12
MAX_DICT_LOG2 = 23  # 8 MiB: the LZMA2 decoder allocates its dictionary up front
OPS_BYTES_PER_OUTPUT_BYTE = 24  # one op per output byte at worst, plus a seek, as varints


class Algorithm(IntEnum):
    DELTA = 1
    FULL = 2


class Codec(IntEnum):
    STORED = 0
    LZMA2 = 1
    BCJ_X86_LZMA2 = 2
    # difference stream only: operand bytes and the rest as two raw LZMA2 streams (codec.py)
    SPLIT_LZMA2 = 3


@dataclass(frozen=True)
class StreamDesc:
    codec: Codec
    lzma_props: int  # (pb * 5 + lp) * 9 + lc, as in the LZMA properties byte
    dict_log2: int
    offset: int
    comp_len: int
    raw_len: int


@dataclass(frozen=True)
class Segment:
    output_offset: int
    output_len: int
    source_start: int
    ops: StreamDesc
    diff: StreamDesc
    extra: StreamDesc

    @property
    def streams(self) -> tuple[StreamDesc, StreamDesc, StreamDesc]:
        return (self.ops, self.diff, self.extra)


@dataclass(frozen=True)
class Header:
    algorithm: Algorithm
    segments: int
    source_size: int
    source_sha256: bytes
    target_size: int
    target_sha256: bytes

    @property
    def table_end(self) -> int:
        return HEADER_SIZE + self.segments * SEGMENT_SIZE


def pack_header(h: Header) -> bytes:
    return _HEADER.pack(
        MAGIC,
        FORMAT_VERSION,
        h.algorithm,
        0,
        h.segments,
        h.source_size,
        h.source_sha256,
        h.target_size,
        h.target_sha256,
    )


def parse_header(data: bytes, patch_size: int) -> Header:
    """The header of a patch of ``patch_size`` bytes whose first bytes are ``data``."""
    if len(data) < HEADER_SIZE:
        raise DeltaFormatError(f"patch too short for a header ({len(data)} bytes)")
    magic, version, algorithm, reserved, segments, ssize, ssha, tsize, tsha = _HEADER.unpack_from(
        data
    )
    if magic != MAGIC:
        raise DeltaFormatError("not an OTAGuard delta patch (bad magic)")
    if version != FORMAT_VERSION:
        raise DeltaFormatError(f"unsupported delta format version {version}")
    if algorithm not in Algorithm.__members__.values() or reserved:
        raise DeltaFormatError(f"unknown delta algorithm {algorithm}")
    if ssize > MAX_IMAGE_SIZE or tsize > MAX_IMAGE_SIZE:
        raise DeltaFormatError("image size over the 1 TiB limit")
    if segments > max(1, -(-tsize // MIN_SEGMENT_OUTPUT)) or (segments == 0) != (tsize == 0):
        raise DeltaFormatError(f"{segments} segments for a {tsize}-byte target")
    header = Header(Algorithm(algorithm), segments, ssize, ssha, tsize, tsha)
    if header.table_end > patch_size:
        raise DeltaFormatError("patch truncated inside its segment table")
    return header


def pack_segment(s: Segment) -> bytes:
    parts = [_SEGMENT_HEAD.pack(s.output_offset, s.output_len, s.source_start)]
    for d in s.streams:
        parts.append(
            _STREAM.pack(d.codec, d.lzma_props, d.dict_log2, 0, d.offset, d.comp_len, d.raw_len)
        )
    return b"".join(parts)


def _parse_stream(data: bytes, at: int) -> StreamDesc:
    codec, props, dict_log2, reserved, offset, comp_len, raw_len = _STREAM.unpack_from(data, at)
    if codec not in Codec.__members__.values() or reserved:
        raise DeltaFormatError(f"unknown stream codec {codec}")
    lc, lp, pb = props % 9, props // 9 % 5, props // 45
    if codec != Codec.STORED and (props >= 225 or lc + lp > 4):
        raise DeltaFormatError(f"bad LZMA properties byte {props}")
    if codec != Codec.STORED and not MIN_DICT_LOG2 <= dict_log2 <= MAX_DICT_LOG2:
        raise DeltaFormatError(f"LZMA dictionary 2**{dict_log2} out of range")
    if codec == Codec.STORED and comp_len != raw_len:
        raise DeltaFormatError("stored stream whose lengths differ")
    del pb
    return StreamDesc(Codec(codec), props, dict_log2, offset, comp_len, raw_len)


def parse_segment(data: bytes, header: Header, index: int, expect_offset: int) -> Segment:
    """Segment ``index`` from its ``SEGMENT_SIZE`` bytes, checked against the header and
    against where the previous segment's output and streams ended (``expect_offset`` is the
    output offset; stream placement is checked by ``check_tiling``)."""
    if len(data) != SEGMENT_SIZE:
        raise DeltaFormatError(f"segment {index}: record truncated")
    out_off, out_len, src_start = _SEGMENT_HEAD.unpack_from(data)
    at = _SEGMENT_HEAD.size
    ops, diff, extra = (_parse_stream(data, at + i * _STREAM.size) for i in range(3))
    if Codec.SPLIT_LZMA2 in (ops.codec, extra.codec):
        raise DeltaFormatError(f"segment {index}: a split stream is only for differences")
    if out_off != expect_offset or out_len == 0 or out_off + out_len > header.target_size:
        raise DeltaFormatError(f"segment {index}: output range out of place")
    last = index == header.segments - 1
    if last != (out_off + out_len == header.target_size):
        raise DeltaFormatError(f"segment {index}: segments do not cover the target exactly")
    if src_start > header.source_size:
        raise DeltaFormatError(f"segment {index}: source start beyond the source")
    if diff.raw_len > out_len or extra.raw_len > out_len:
        raise DeltaFormatError(f"segment {index}: stream longer than the segment's output")
    if ops.raw_len > OPS_BYTES_PER_OUTPUT_BYTE * out_len + 16:
        raise DeltaFormatError(f"segment {index}: instruction stream too long")
    if header.algorithm == Algorithm.FULL and (diff.raw_len or src_start):
        raise DeltaFormatError(f"segment {index}: a full image refers to a source")
    return Segment(out_off, out_len, src_start, ops, diff, extra)


def check_tiling(segment: Segment, index: int, stream_offset: int) -> int:
    """Check the segment's streams start at ``stream_offset`` and follow each other without
    gap or overlap; return where the next segment's streams must start."""
    for desc in segment.streams:
        if desc.offset != stream_offset:
            raise DeltaFormatError(f"segment {index}: streams not laid out in order")
        stream_offset += desc.comp_len
    return stream_offset
