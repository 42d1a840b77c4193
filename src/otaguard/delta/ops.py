"""The instruction stream of a segment: what to copy, add, insert and where to seek.

bsdiff describes a new file as a list of (add ``x`` bytes of source + difference, insert ``y``
bytes of new data, move the source position by ``z``). We keep that model and split it once
more: a long run of zero difference becomes COPY, so the unchanged parts of an image are plain
reads of the source instead of LZMA-decoding megabytes of zeros (LZMA2 decodes zeros at about
60 MB/s here; a copy goes at disk speed). Each instruction is one unsigned LEB128 varint
``arg << 2 | op``; SEEK's argument is zigzag-encoded so it can go backwards.

Pure functions: integers in, bytes out, and back; malformed input raises ``DeltaFormatError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from enum import IntEnum

from otaguard.errors import DeltaFormatError

MAX_VARINT_BYTES = 10  # 64 bits


class Op(IntEnum):
    ADD = 0  # arg bytes: source + difference stream (bytewise, modulo 256)
    COPY = 1  # arg bytes: source as is
    INSERT = 2  # arg bytes: from the extra stream
    SEEK = 3  # move the source position by zigzag(arg)


def zigzag(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)


def encode_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_ops(ops: Iterable[tuple[Op, int]]) -> bytes:
    """Pack (op, argument) pairs; SEEK takes a signed argument, the others a positive count."""
    out = bytearray()
    for op, arg in ops:
        if op == Op.SEEK:
            out += encode_varint(zigzag(arg) << 2 | op)
        elif arg <= 0:
            raise ValueError(f"{op.name} of {arg} bytes")
        else:
            out += encode_varint(arg << 2 | op)
    return bytes(out)


class OpReader:
    """Decodes instructions from a byte stream handed over in pieces (``feed``)."""

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def feed(self, data: bytes) -> None:
        self._buf = self._buf[self._pos :] + data
        self._pos = 0

    @property
    def pending(self) -> int:
        return len(self._buf) - self._pos

    def next_op(self, final: bool) -> tuple[Op, int] | None:
        """The next instruction, or None when more input is needed (or, ``final``, the end)."""
        buf, pos, value, shift = self._buf, self._pos, 0, 0
        for i in range(MAX_VARINT_BYTES):
            if pos + i >= len(buf):
                if final and i:
                    raise DeltaFormatError("instruction stream ends inside an instruction")
                return None
            byte = buf[pos + i]
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                self._pos = pos + i + 1
                return _decode(value)
        raise DeltaFormatError("instruction varint longer than 64 bits")


_OPS = tuple(Op)


def _decode(value: int) -> tuple[Op, int]:
    op, arg = _OPS[value & 3], value >> 2
    if op == Op.SEEK:
        return op, unzigzag(arg)
    if arg == 0:
        raise DeltaFormatError(f"{op.name} of zero bytes")
    return op, arg


def iter_ops(data: bytes) -> Iterator[tuple[Op, int]]:
    """All instructions of a complete stream (for tests and tools)."""
    reader = OpReader()
    reader.feed(data)
    while (item := reader.next_op(final=True)) is not None:
        yield item
