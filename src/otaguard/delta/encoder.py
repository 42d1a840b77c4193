"""Making a patch, on the maker's workstation: bsdiff matching, our streams, LZMA2 per stream.

Why this pipeline (figures in docs/BENCHMARKS.md, "Delta updates"): bsdiff's suffix-array
matching with a *difference* stream suits recompiled code, where most bytes of a moved function
are equal and the rest differ by small displacement changes; bsdiff4 exposes its raw control,
difference and extra streams. What we change is everything after matching: long zero runs of
the difference become COPY instructions (fast to apply), and the instruction, difference and
inserted-bytes streams are each compressed with the LZMA2 settings that suit them
(``codec.compress_best``) instead of bzip2. The output is cut into independently decodable
segments (16 MiB of output by default) so a device can resume after a power cut.

When the delta is not smaller than the image compressed alone (compressed inputs, unrelated
images), ``encode`` writes a ``FULL`` patch instead: the image in the same container, no source
needed. Memory: bsdiff4 holds both images and a suffix array of the source (about 20 bytes per
source byte, measured); this runs where releases are signed, not on devices.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bsdiff4.core  # type: ignore[import-untyped]

from otaguard.delta import codec, operands
from otaguard.delta.container import (
    HEADER_SIZE,
    MIN_SEGMENT_OUTPUT,
    SEGMENT_SIZE,
    Algorithm,
    Codec,
    Header,
    Segment,
    StreamDesc,
    pack_header,
    pack_segment,
)
from otaguard.delta.covers import hdiff_available, hdiff_covers
from otaguard.delta.decoder import add_bytes
from otaguard.delta.info import DeltaInfo
from otaguard.delta.ops import Op, encode_ops
from otaguard.errors import DeltaError

DEFAULT_SEGMENT = 16 << 20
MIN_COPY_RUN = 4096  # zero-difference runs at least this long become COPY (measured: shorter
# runs cost patch size and per-instruction time, longer ones LZMA time over zeros)
_ZERO_RUN = re.compile(b"\\x00{%d,}" % MIN_COPY_RUN)
_NEGATE = bytes(-i & 0xFF for i in range(256))


@dataclass
class _SegmentPlan:
    source_start: int
    ops: list[tuple[Op, int]] = field(default_factory=list)
    diff: list[bytes] = field(default_factory=list)
    diff_src: list[int] = field(default_factory=list)  # source offset of each ADD's bytes
    extra: list[bytes] = field(default_factory=list)
    output_len: int = 0


def _int64(b: bytes, at: int) -> int:
    value = int.from_bytes(b[at : at + 7] + bytes([b[at + 7] & 0x7F]), "little")
    return -value if b[at + 7] & 0x80 else value


def common_ends(old: bytes, new: bytes, block: int = 1 << 16) -> tuple[int, int]:
    """Lengths of the equal prefix and of the equal suffix (at the same distance from the end),
    found a block at a time: an image's unchanged partition space is skipped before bsdiff."""
    limit = min(len(old), len(new))
    prefix = 0
    while prefix < limit:
        k = min(block, limit - prefix)
        if old[prefix : prefix + k] != new[prefix : prefix + k]:
            break
        prefix += k
    suffix = 0
    while suffix < limit - prefix:
        k = min(block, limit - prefix - suffix)
        if (
            old[len(old) - suffix - k : len(old) - suffix]
            != new[len(new) - suffix - k : len(new) - suffix]
        ):
            break
        suffix += k
    return prefix, suffix


Middle = Callable[[bytes, bytes], Iterator[tuple[Op, int, bytes]]]


def bsdiff_ops(old: bytes, new: bytes) -> Iterator[tuple[Op, int, bytes]]:
    """bsdiff's matching as instructions (see ``matched_ops``)."""
    return matched_ops(old, new, _bsdiff_middle)


def matched_ops(old: bytes, new: bytes, middle: Middle) -> Iterator[tuple[Op, int, bytes]]:
    """(op, argument, payload): payload is the difference (ADD) or the new bytes (INSERT).

    Equal whole blocks at both ends become COPY; ``middle`` (a matcher) does the rest. Seeks
    are emitted lazily, just before the next source read, so every seek lands inside the
    source."""
    prefix, suffix = common_ends(old, new)
    if prefix:
        yield Op.COPY, prefix, b""
    src = prefix
    src_end, new_end = len(old) - suffix, len(new) - suffix
    if new_end > prefix:
        for op, arg, payload in middle(old[prefix:src_end], new[prefix:new_end]):
            yield op, arg, payload
            src += arg if op in (Op.ADD, Op.COPY, Op.SEEK) else 0
    if suffix:
        if src != src_end:
            yield Op.SEEK, src_end - src, b""
        yield Op.COPY, suffix, b""


def _add_ops(region: bytes) -> Iterator[tuple[Op, int, bytes]]:
    """A difference region as ADD, with zero runs of ``MIN_COPY_RUN`` or more as COPY."""
    last = 0
    for m in _ZERO_RUN.finditer(region):
        if m.start() > last:
            yield Op.ADD, m.start() - last, region[last : m.start()]
        yield Op.COPY, m.end() - m.start(), b""
        last = m.end()
    if last < len(region):
        yield Op.ADD, len(region) - last, region[last:]


def _bsdiff_middle(old: bytes, new: bytes) -> Iterator[tuple[Op, int, bytes]]:
    """bsdiff4's matching as our instructions, positions relative to the start of ``old``."""
    control, diff, extra = bsdiff4.core.diff(old, new)
    dpos = epos = pending_seek = 0
    for at in range(0, len(control), 24):
        x, y, z = _int64(control, at), _int64(control, at + 8), _int64(control, at + 16)
        if x:
            if pending_seek:
                yield Op.SEEK, pending_seek, b""
                pending_seek = 0
            yield from _add_ops(diff[dpos : dpos + x])
            dpos += x
        if y:
            yield Op.INSERT, y, extra[epos : epos + y]
            epos += y
        pending_seek += z


def difference(old: bytes, new: bytes) -> bytes:
    """Bytewise (new - old) mod 256, in C: old negated by a table, then bsdiff4's add loop."""
    return add_bytes(old.translate(_NEGATE), new)


def hdiff_middle(old: bytes, new: bytes) -> Iterator[tuple[Op, int, bytes]]:
    """HDiffPatch's covers (``covers.py``) as our instructions, relative to ``old``'s start."""
    found = hdiff_covers(old, new)
    if found is None:
        raise DeltaError("the hdiffpatch matcher is not installed")
    src = npos = 0
    for c in found:
        if c.new_pos < npos:
            raise DeltaError("HDiffPatch covers overlap")
        if c.new_pos > npos:
            yield Op.INSERT, c.new_pos - npos, new[npos : c.new_pos]
        if c.old_pos != src:
            yield Op.SEEK, c.old_pos - src, b""
        end = c.new_pos + c.length
        yield from _add_ops(difference(old[c.old_pos : c.old_pos + c.length], new[c.new_pos : end]))
        src, npos = c.old_pos + c.length, end
    if npos < len(new):
        yield Op.INSERT, len(new) - npos, new[npos:]


_MIDDLES: dict[str, Middle] = {"bsdiff": _bsdiff_middle, "hdiffpatch": hdiff_middle}
MATCHERS = ("bsdiff", "hdiffpatch")


def _plan(items: Iterator[tuple[Op, int, bytes]], segment_size: int) -> list[_SegmentPlan]:
    """Cut the instruction list into segments of ``segment_size`` output bytes, splitting an
    instruction that crosses a boundary."""
    plans = [_SegmentPlan(0)]
    src = 0
    for op, arg, payload in items:
        if op == Op.SEEK:
            plans[-1].ops.append((op, arg))
            src += arg
            continue
        done = 0
        while done < arg:
            cur = plans[-1]
            if cur.output_len == segment_size:
                cur = _SegmentPlan(src)
                plans.append(cur)
            k = min(arg - done, segment_size - cur.output_len)
            cur.ops.append((op, k))
            if op == Op.ADD:
                cur.diff.append(payload[done : done + k])
                cur.diff_src.append(src)
            elif op == Op.INSERT:
                cur.extra.append(payload[done : done + k])
            if op != Op.INSERT:
                src += k
            cur.output_len += k
            done += k
    return [p for p in plans if p.output_len]


def _full_may_pay(new: bytes, delta_size: int) -> bool:
    """Whether the image compressed alone could beat the delta: a fast LZMA pass (within a few
    percent of the best settings) spares the slow ones when the delta is clearly smaller."""
    quick = len(
        lzma.compress(new, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2, "preset": 1}])
    )
    return delta_size > quick * 0.7


def _full_items(new: bytes) -> Iterator[tuple[Op, int, bytes]]:
    if new:
        yield Op.INSERT, len(new), new


def _compress_diff(
    p: _SegmentPlan, old: bytes, split_difference: bool | None
) -> tuple[Codec, int, int, bytes]:
    """The difference stream whole or split by operand positions (``operands.py``): the
    smaller of the two, or as ``split_difference`` says when it is not None."""
    best = codec.compress_best(b"".join(p.diff), "diff")
    if not p.diff or split_difference is False:
        return best
    fields, rest = [], []
    for src, diff in zip(p.diff_src, p.diff, strict=True):
        f, r = operands.split(old[src : src + len(diff)], diff)
        fields.append(f)
        rest.append(r)
    split = codec.compress_split(b"".join(fields), b"".join(rest))
    return split if split_difference or len(split[3]) < len(best[3]) else best


def _compress(
    plans: list[_SegmentPlan], old: bytes = b"", split_difference: bool | None = None
) -> list[tuple[_SegmentPlan, list[tuple[Codec, int, int, bytes]]]]:
    out = []
    for p in plans:
        streams = [
            codec.compress_best(encode_ops(p.ops), "ops"),
            _compress_diff(p, old, split_difference),
            codec.compress_best(b"".join(p.extra), "extra"),
        ]
        out.append((p, streams))
    return out


_Packed = list[tuple[_SegmentPlan, list[tuple[Codec, int, int, bytes]]]]


def _smallest_delta(
    old: bytes,
    new: bytes,
    segment_size: int,
    matchers: tuple[str, ...],
    split_difference: bool | None = None,
) -> tuple[str, _Packed]:
    """Every usable matcher's patch, compressed: (matcher, patch) of the smallest (the first
    on a tie)."""
    usable = [m for m in matchers if m != "hdiffpatch" or hdiff_available()]
    unknown = set(matchers) - set(_MIDDLES)
    if unknown or not usable:
        raise DeltaError(f"unknown or unusable matchers: {sorted(unknown) or list(matchers)}")
    best: tuple[str, _Packed] | None = None
    for name in usable:
        items = matched_ops(old, new, _MIDDLES[name])
        packed = _compress(_plan(items, segment_size), old, split_difference)
        if best is None or _body_size(packed) < _body_size(best[1]):
            best = name, packed
    assert best is not None
    return best


def _body_size(packed: list[tuple[_SegmentPlan, list[tuple[Codec, int, int, bytes]]]]) -> int:
    return sum(len(s[3]) for _, streams in packed for s in streams)


def _write(
    path: Path,
    header: Header,
    packed: list[tuple[_SegmentPlan, list[tuple[Codec, int, int, bytes]]]],
    raw: list[list[int]],
) -> int:
    stream_at = header.table_end
    records, bodies = [], []
    output_offset = 0
    for (plan, streams), raw_lens in zip(packed, raw, strict=True):
        descs = []
        for (c, props, dict_log2, data), raw_len in zip(streams, raw_lens, strict=True):
            descs.append(StreamDesc(c, props, dict_log2, stream_at, len(data), raw_len))
            bodies.append(data)
            stream_at += len(data)
        seg = Segment(output_offset, plan.output_len, plan.source_start, *descs)
        records.append(pack_segment(seg))
        output_offset += plan.output_len
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(pack_header(header))
        f.writelines(records)
        f.writelines(bodies)
        size = f.tell()
    os.replace(tmp, path)
    return size


def encode(
    old_path: Path,
    new_path: Path,
    out_path: Path,
    *,
    segment_size: int = DEFAULT_SEGMENT,
    allow_full: bool = True,
    matchers: tuple[str, ...] = MATCHERS,
    split_difference: bool | None = None,
) -> DeltaInfo:
    """Write a patch turning ``old_path`` into ``new_path`` to ``out_path`` (atomically).

    Runs each of ``matchers`` (``MATCHERS``: bsdiff, and HDiffPatch's covers when hdiffpatch
    is installed) and keeps the smallest patch; falls back to a ``FULL`` patch when that is
    smaller (unless ``allow_full`` is False). Each segment's difference stream is whole or
    split by operand positions (``operands.py``), whichever is smaller, unless
    ``split_difference`` forces one (tests, benchmarks). Raises ``DeltaError`` on a bad segment size or
    an unknown matcher."""
    if segment_size < MIN_SEGMENT_OUTPUT:
        raise DeltaError(f"segment size below {MIN_SEGMENT_OUTPUT} bytes")
    old, new = old_path.read_bytes(), new_path.read_bytes()
    matcher, delta = _smallest_delta(old, new, segment_size, matchers, split_difference)
    algorithm, chosen = Algorithm.DELTA, delta
    if allow_full and _full_may_pay(new, _body_size(delta)):
        full = _compress(_plan(_full_items(new), segment_size))
        if _body_size(full) <= _body_size(delta):  # a tie: no source needed is better
            algorithm, chosen, matcher = Algorithm.FULL, full, "none"
    header = Header(
        algorithm=algorithm,
        segments=len(chosen),
        source_size=len(old),
        source_sha256=hashlib.sha256(old).digest(),
        target_size=len(new),
        target_sha256=hashlib.sha256(new).digest(),
    )
    raw = [
        [len(encode_ops(p.ops)), sum(map(len, p.diff)), sum(map(len, p.extra))] for p, _ in chosen
    ]
    size = _write(out_path, header, chosen, raw)
    assert size >= HEADER_SIZE + header.segments * SEGMENT_SIZE
    return DeltaInfo(
        algorithm=algorithm,
        source_size=header.source_size,
        source_sha256=header.source_sha256.hex(),
        target_size=header.target_size,
        target_sha256=header.target_sha256.hex(),
        segments=header.segments,
        patch_size=size,
        matcher=matcher,
    )
