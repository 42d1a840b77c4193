"""A second matcher for the encoder: HDiffPatch's covers, turned into our instructions.

Why: bsdiff's greedy scan and HDiffPatch's cover search find different approximate matches,
and neither wins on every pair (docs/BENCHMARKS.md, "Delta updates": HDiffPatch's covers are
smaller on the cryptography and orjson pairs, bsdiff's on zstandard and the Go binaries). The
encoder runs both and keeps the smaller patch. Only the *matching* is taken from HDiffPatch: a
cover says "new[new_pos:new_pos+length] = old[old_pos:...] + difference", exactly our ADD after
a SEEK, and the bytes between covers are INSERTs, so the patch format and the device's decoder
do not change and every patch still decodes with the same code.

We read HDiffPatch's uncompressed patch (``HDIFF13&`` with no compressor, its documented
"compressed diff" layout) only for its cover table; the difference and literal streams are
recomputed here from the two images, so a cover table that lies cannot make a wrong patch: the
covers are checked (in order, no overlap, inside both images) and the encoder's result is a
function of the images and the cover positions only.

``hdiffpatch`` (MIT, a C++ extension) is a maker-side dependency (extra ``maker``); without it
the encoder uses bsdiff alone. Pure parsing here; the import is the only I/O-like edge.
"""

from __future__ import annotations

from dataclasses import dataclass

from otaguard.errors import DeltaError

HDIFF13 = b"HDIFF13&"
_HEAD_FIELDS = 11  # new size, old size, covers, then (raw, compressed) sizes of four buffers
MAX_VARINT_BYTES = 10


@dataclass(frozen=True)
class Cover:
    old_pos: int
    new_pos: int
    length: int


def _varint(buf: bytes, pos: int, tag_bits: int = 0) -> tuple[int, int, int]:
    """HDiffPatch's packed unsigned int (most significant 7-bit group first; the first byte
    carries ``tag_bits`` tag bits on top): (value, tag, next position)."""
    if pos >= len(buf):
        raise DeltaError("HDiffPatch cover table truncated")
    first = buf[pos]
    tag = first >> (8 - tag_bits) if tag_bits else 0
    more = first & (1 << (7 - tag_bits))
    value = first & ((1 << (7 - tag_bits)) - 1)
    for i in range(1, MAX_VARINT_BYTES + 1):
        if not more:
            return value, tag, pos + i
        if pos + i >= len(buf):
            raise DeltaError("HDiffPatch cover table truncated")
        byte = buf[pos + i]
        value = value << 7 | byte & 0x7F
        more = byte & 0x80
    raise DeltaError("HDiffPatch varint too long")


def parse_hdiff13(data: bytes, old_size: int, new_size: int) -> list[Cover]:
    """The covers of an uncompressed HDiffPatch patch between images of these sizes, checked:
    sorted by new position, not overlapping, inside both images. ``DeltaError`` otherwise."""
    if not data.startswith(HDIFF13) or b"\0" not in data[8:64]:
        raise DeltaError("not an HDiffPatch HDIFF13 patch")
    pos = data.index(b"\0", 8) + 1
    if data[8 : pos - 1]:
        raise DeltaError("HDiffPatch patch is compressed; covers need 'none'")
    head = []
    for _ in range(_HEAD_FIELDS):
        value, _, pos = _varint(data, pos)
        head.append(value)
    got_new, got_old, count, table_len = head[0], head[1], head[2], head[3]
    if (got_new, got_old) != (new_size, old_size) or any(head[4::2]):
        raise DeltaError("HDiffPatch patch does not match the images or is compressed")
    end = pos + table_len
    covers: list[Cover] = []
    last_old = last_new = 0
    for _ in range(count):
        step, back, pos = _varint(data, pos, tag_bits=1)
        old_pos = last_old - step if back else last_old + step
        gap, _, pos = _varint(data, pos)
        length, _, pos = _varint(data, pos)
        cover = Cover(old_pos, last_new + gap, length)
        if old_pos < 0 or old_pos + length > old_size or cover.new_pos + length > new_size:
            raise DeltaError("HDiffPatch cover outside the images")
        if length:
            covers.append(cover)
        last_old, last_new = old_pos + length, cover.new_pos + length
    if pos != end:
        raise DeltaError("HDiffPatch cover table length mismatch")
    return covers


def hdiff_available() -> bool:
    try:
        import hdiffpatch  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return False
    return True


def hdiff_covers(old: bytes, new: bytes) -> list[Cover] | None:
    """HDiffPatch's covers for ``old`` -> ``new``, or None when hdiffpatch is not installed."""
    try:
        import hdiffpatch  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    raw: bytes = hdiffpatch.diff(old, new, "none", validate=False)
    return parse_hdiff13(raw, len(old), len(new))
