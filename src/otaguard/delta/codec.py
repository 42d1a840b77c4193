"""Compression of one stream: raw LZMA2 with chosen literal/position bits, optionally behind
xz's x86 branch filter, or stored; and the bounded streaming reader a device decodes with.

Raw LZMA2 (no xz container) because the container's sizes and checks are in our segment table
already, and the table's ``dict_log2`` lets the decoder refuse a dictionary larger than 8 MiB
before liblzma allocates it (the decoder's memory is its dictionary). The encoder tries a few
settings per stream and keeps the smallest: difference bytes compress best with ``lc=0..1,
pb=0`` (no byte alignment), instructions and inserted code with the defaults, inserted x86 code
sometimes better behind the BCJ filter. The difference stream may also be *split*
(``compress_split``/``SplitReader``): operand bytes and the rest as two raw LZMA2 streams behind
a 17-byte prefix, merged back by positions found in the source (``operands.py``).
"""

from __future__ import annotations

import lzma
import struct
from dataclasses import replace
from typing import Any, BinaryIO

from otaguard.delta import operands
from otaguard.delta.container import MAX_DICT_LOG2, MIN_DICT_LOG2, Codec, StreamDesc
from otaguard.errors import DeltaFormatError

READ_SIZE = 64 * 1024
SPLIT_PREFIX = struct.Struct("<QQB")  # operand part: comp_len, raw_len, LZMA properties
SPLIT_FIELDS_MAX_DICT_LOG2 = 20  # the operand part is small: 1 MiB of dictionary at most


def lzma_props(lc: int, lp: int, pb: int) -> int:
    return (pb * 5 + lp) * 9 + lc


def _filters(codec: Codec, props: int, dict_log2: int) -> list[dict[str, Any]]:
    lc, lp, pb = props % 9, props // 9 % 5, props // 45
    lzma2: dict[str, Any] = {
        "id": lzma.FILTER_LZMA2,
        "preset": 9 | lzma.PRESET_EXTREME,
        "dict_size": 1 << dict_log2,
        "lc": lc,
        "lp": lp,
        "pb": pb,
    }
    if codec == Codec.BCJ_X86_LZMA2:
        return [{"id": lzma.FILTER_X86}, lzma2]
    return [lzma2]


def dict_log2_for(size: int) -> int:
    """The smallest dictionary that holds the whole stream, within the decoder's limits."""
    return max(MIN_DICT_LOG2, min(MAX_DICT_LOG2, (max(size, 1) - 1).bit_length()))


# (codec, lc, lp, pb) candidates per stream kind
CANDIDATES: dict[str, list[tuple[Codec, int, int, int]]] = {
    "ops": [(Codec.LZMA2, 3, 0, 2), (Codec.LZMA2, 0, 0, 0)],
    "diff": [(Codec.LZMA2, 0, 0, 0), (Codec.LZMA2, 1, 0, 0), (Codec.LZMA2, 0, 2, 2)],
    "extra": [(Codec.LZMA2, 3, 0, 2), (Codec.BCJ_X86_LZMA2, 3, 0, 2), (Codec.LZMA2, 0, 0, 0)],
}


def _check_props(props: int) -> None:
    if props >= 225 or props % 9 + props // 9 % 5 > 4:
        raise DeltaFormatError(f"bad LZMA properties byte {props}")


def fields_dict_log2(raw_len: int) -> int:
    return min(SPLIT_FIELDS_MAX_DICT_LOG2, dict_log2_for(raw_len))


def compress_split(fields: bytes, rest: bytes) -> tuple[Codec, int, int, bytes]:
    """The difference as operand bytes and the rest (``operands.py``), each compressed with
    the better of two settings; one ``SPLIT_LZMA2`` stream."""
    packed_fields: tuple[int, bytes] | None = None
    f_log2 = fields_dict_log2(len(fields))
    for lc, lp, pb in ((0, 2, 2), (0, 0, 0)):
        props = lzma_props(lc, lp, pb)
        data = lzma.compress(
            fields, format=lzma.FORMAT_RAW, filters=_filters(Codec.LZMA2, props, f_log2)
        )
        if packed_fields is None or len(data) < len(packed_fields[1]):
            packed_fields = props, data
    assert packed_fields is not None
    r_log2 = dict_log2_for(len(rest))
    best_rest: tuple[int, bytes] | None = None
    for _, lc, lp, pb in CANDIDATES["diff"][:2]:
        props = lzma_props(lc, lp, pb)
        data = lzma.compress(
            rest, format=lzma.FORMAT_RAW, filters=_filters(Codec.LZMA2, props, r_log2)
        )
        if best_rest is None or len(data) < len(best_rest[1]):
            best_rest = props, data
    assert best_rest is not None
    f_props, f_data = packed_fields
    head = SPLIT_PREFIX.pack(len(f_data), len(fields), f_props)
    return Codec.SPLIT_LZMA2, best_rest[0], r_log2, head + f_data + best_rest[1]


def compress_best(data: bytes, kind: str) -> tuple[Codec, int, int, bytes]:
    """(codec, props, dict_log2, compressed) of the smallest candidate for this stream."""
    best: tuple[Codec, int, int, bytes] = (Codec.STORED, 0, 0, data)
    if not data:
        return best
    dict_log2 = dict_log2_for(len(data))
    for codec, lc, lp, pb in CANDIDATES[kind]:
        props = lzma_props(lc, lp, pb)
        filters = _filters(codec, props, dict_log2)
        packed = lzma.compress(data, format=lzma.FORMAT_RAW, filters=filters)
        if len(packed) < len(best[3]):
            best = (codec, props, dict_log2, packed)
    return best


class StreamReader:
    """Reads one stream's decoded bytes from the patch file, a bounded piece at a time.

    Never yields more than the stream's declared ``raw_len`` and never reads outside its
    ``comp_len`` bytes of the patch; anything else is a ``DeltaFormatError``.
    """

    def __init__(self, patch: BinaryIO, desc: StreamDesc) -> None:
        self._patch = patch
        self._desc = desc
        self._next_in = desc.offset
        self._end_in = desc.offset + desc.comp_len
        self._left = desc.raw_len
        self._dec: Any = None
        if desc.codec == Codec.SPLIT_LZMA2:
            raise DeltaFormatError("a split stream needs SplitReader")
        if desc.codec != Codec.STORED:
            filters = _filters(desc.codec, desc.lzma_props, desc.dict_log2)
            self._dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=filters)

    @property
    def remaining(self) -> int:
        return self._left

    def _read_input(self, size: int) -> bytes:
        size = min(size, self._end_in - self._next_in)
        if size <= 0:
            return b""
        self._patch.seek(self._next_in)
        data = self._patch.read(size)
        if len(data) != size:
            raise DeltaFormatError("patch file shorter than its segment table says")
        self._next_in += size
        return data

    def read(self, size: int) -> bytes:
        """Up to ``size`` decoded bytes (fewer only at the end of the stream)."""
        size = min(size, self._left)
        if size <= 0:
            return b""
        data = self._read_input(size) if self._dec is None else self._decompress(size)
        self._left -= len(data)
        return data

    def difference(self, source: bytes, first: bool) -> bytes:
        """The difference for ``source``, the next piece of an ADD instruction's source bytes
        (``first``: the instruction's first piece)."""
        del first
        return self.read_exact(len(source))

    def read_exact(self, size: int) -> bytes:
        data = self.read(size)
        if len(data) != size:
            raise DeltaFormatError("stream shorter than its instructions need")
        return data

    def _decompress(self, size: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < size:
            if self._dec.eof:
                break
            data = b"" if not self._dec.needs_input else self._read_input(READ_SIZE)
            if self._dec.needs_input and not data:
                raise DeltaFormatError("compressed stream truncated")
            try:
                out = self._dec.decompress(data, max_length=size - got)
            except (lzma.LZMAError, EOFError) as exc:
                raise DeltaFormatError(f"corrupt compressed stream: {exc}") from exc
            parts.append(out)
            got += len(out)
        return b"".join(parts)

    def finish(self) -> None:
        """Check the stream was used up exactly (no bytes left over, no unread input)."""
        if self._left:
            raise DeltaFormatError("stream longer than its instructions use")
        if self._dec is not None and not self._dec.eof:
            try:
                extra = self._dec.decompress(self._read_input(READ_SIZE), max_length=1)
            except (lzma.LZMAError, EOFError) as exc:
                raise DeltaFormatError(f"corrupt compressed stream: {exc}") from exc
            if extra or not self._dec.eof:
                raise DeltaFormatError("stream longer than its declared length")
        if self._next_in != self._end_in or (self._dec is not None and self._dec.unused_data):
            raise DeltaFormatError("trailing bytes after a compressed stream")


class SplitReader:
    """A ``SPLIT_LZMA2`` difference stream: two ``StreamReader``s (operand bytes, the rest)
    merged back by the operand positions of the source (``operands.OperandScan``)."""

    def __init__(self, patch: BinaryIO, desc: StreamDesc) -> None:
        if desc.comp_len < SPLIT_PREFIX.size:
            raise DeltaFormatError("split stream shorter than its prefix")
        patch.seek(desc.offset)
        head = patch.read(SPLIT_PREFIX.size)
        if len(head) != SPLIT_PREFIX.size:
            raise DeltaFormatError("patch file shorter than its segment table says")
        f_comp, f_raw, f_props = SPLIT_PREFIX.unpack(head)
        _check_props(f_props)
        rest_comp = desc.comp_len - SPLIT_PREFIX.size - f_comp
        if rest_comp < 0 or f_raw > desc.raw_len:
            raise DeltaFormatError("split stream parts do not fit the stream")
        at = desc.offset + SPLIT_PREFIX.size
        fields = StreamDesc(Codec.LZMA2, f_props, fields_dict_log2(f_raw), at, f_comp, f_raw)
        rest = replace(
            desc,
            codec=Codec.LZMA2,
            offset=at + f_comp,
            comp_len=rest_comp,
            raw_len=desc.raw_len - f_raw,
        )
        self._fields = StreamReader(patch, fields)
        self._rest = StreamReader(patch, rest)
        self._scan = operands.OperandScan()

    def difference(self, source: bytes, first: bool) -> bytes:
        if first:
            self._scan = operands.OperandScan()
        ranges = self._scan.scan(source)
        n_fields = operands.field_bytes(ranges)
        fields = self._fields.read_exact(n_fields)
        rest = self._rest.read_exact(len(source) - n_fields)
        return operands.merge(ranges, fields, rest)

    @property
    def remaining(self) -> int:
        return self._fields.remaining + self._rest.remaining

    def finish(self) -> None:
        self._fields.finish()
        self._rest.finish()


def open_stream(patch: BinaryIO, desc: StreamDesc) -> StreamReader | SplitReader:
    return (
        SplitReader(patch, desc) if desc.codec == Codec.SPLIT_LZMA2 else StreamReader(patch, desc)
    )
