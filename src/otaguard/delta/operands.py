"""Where x86 branch and RIP-relative operands probably are in source bytes, so the difference
stream can be split in two: operand bytes and the rest, each LZMA2-compressed on its own.

Why: the difference of recompiled x86-64 code is mostly zero except where a 4-byte
displacement changed; those changes (new call and data offsets) and the rest (changed
instructions, data) follow different statistics, and LZMA2 models each better alone
(measured in docs/BENCHMARKS.md, "Delta updates": cryptography's difference stream -15 %,
pydantic-core's -37 %; zstandard's gets worse, so the encoder chooses per segment). The
positions are found in the *source* bytes, which the decoder reads anyway, so they cost
nothing in the patch; a wrong guess only costs compression, never correctness.

Rule (the same for encoder and decoder, applied per ADD instruction, starting afresh at each):
a 4-byte field starts at position ``j`` when the one or two source bytes before ``j`` (inside
the instruction) are ``E8``/``E9`` (call/jmp rel32), ``0F 80..8F`` (jcc rel32), or a common
opcode followed by a ModRM byte of RIP-relative form; fields do not overlap (left to right, a
field covers ``j..j+3`` and the next may start at ``j+4``). ``OperandScan`` applies the rule a
piece at a time with exactly the result of one pass over the whole instruction.

Pure: bytes in, positions out.
"""

from __future__ import annotations

import re

_OPCODES = bytes.fromhex(
    "8b8d89 3b39 032b33 85 63 ff 1011 2829 6f7f b6b7be 585954 2e2f c7818380 3a38 888a 0b23131b 3101"
)
_MODRM_RIP = bytes([m << 3 | 5 for m in range(8)])
_FIELD = re.compile(
    b"(?<=[\\xe8\\xe9])|(?<=\\x0f[\\x80-\\x8f])|(?<=["
    + re.escape(_OPCODES)
    + b"]["
    + re.escape(_MODRM_RIP)
    + b"])"
)
FIELD_LEN = 4


class OperandScan:
    """The operand fields of one ADD instruction's source bytes, fed in order (``scan``)."""

    def __init__(self) -> None:
        self._tail = b""  # up to 2 bytes before the next piece, inside this instruction
        self._next = 0  # first position (relative to the next piece) a field may start at

    def scan(self, piece: bytes) -> list[tuple[int, int]]:
        """(start, end) ranges of ``piece`` that are operand bytes, in order."""
        buf = self._tail + piece
        off = len(self._tail)
        ranges: list[tuple[int, int]] = []
        if self._next > 0:
            ranges.append((0, min(self._next, len(piece))))
        allowed = off + self._next
        for m in _FIELD.finditer(buf, off, len(buf)):
            j = m.start()
            if j >= allowed and j < len(buf):
                ranges.append((j - off, min(j + FIELD_LEN, len(buf)) - off))
                allowed = j + FIELD_LEN
        self._next = max(0, allowed - len(buf))
        self._tail = buf[-2:]
        return ranges


def split(source: bytes, difference: bytes) -> tuple[bytes, bytes]:
    """(operand bytes, other bytes) of one ADD instruction's difference, by its source."""
    ranges = OperandScan().scan(source)
    return _split(difference, ranges)


def _split(difference: bytes, ranges: list[tuple[int, int]]) -> tuple[bytes, bytes]:
    fields, rest, last = [], [], 0
    for start, end in ranges:
        rest.append(difference[last:start])
        fields.append(difference[start:end])
        last = end
    rest.append(difference[last:])
    return b"".join(fields), b"".join(rest)


def merge(ranges: list[tuple[int, int]], fields: bytes, rest: bytes) -> bytes:
    """The inverse of the split of one piece: interleave ``fields`` and ``rest`` by ``ranges``."""
    out, fpos, rpos, last = [], 0, 0, 0
    for start, end in ranges:
        out.append(rest[rpos : rpos + start - last])
        rpos += start - last
        out.append(fields[fpos : fpos + end - start])
        fpos += end - start
        last = end
    out.append(rest[rpos:])
    return b"".join(out)


def field_bytes(ranges: list[tuple[int, int]]) -> int:
    return sum(end - start for start, end in ranges)
