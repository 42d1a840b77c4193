"""Streaming apply: rebuild the target from the source image and a patch, in bounded memory.

Runs on the device. The source is read with seeks from the active slot, the output goes out in
order through the caller's ``write`` (the inactive slot), and at most one 1 MiB piece of each of
source, difference and output plus the LZMA2 dictionaries (at most 8 MiB per stream, refused
above that before allocating; a split difference stream adds one of at most 1 MiB) are in
memory whatever the image size. Every length in the patch
is checked against its limit before it is used; any inconsistency is a ``DeltaFormatError``.
The rebuilt image is hashed as it is written and compared with the sha256 in the header (and
with the one the caller expects, which on a device comes from signed metadata).

Resume: segments decode independently, so after a power cut ``apply(resume=checkpoint)``
starts at the segment the checkpoint names; it re-reads the output written before that from
``written`` to rebuild the hash, as a resumed download does from the slot.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import BinaryIO

import bsdiff4.core  # type: ignore[import-untyped]

from otaguard.delta.codec import READ_SIZE, SplitReader, StreamReader, open_stream
from otaguard.delta.container import (
    HEADER_SIZE,
    SEGMENT_SIZE,
    Algorithm,
    Segment,
    check_tiling,
    parse_header,
    parse_segment,
)
from otaguard.delta.info import Checkpoint, DeltaInfo
from otaguard.delta.ops import Op, OpReader
from otaguard.errors import DeltaFormatError, DeltaSourceMismatchError, DeltaTargetMismatchError

CHUNK = 1 << 20
_ZERO64 = bsdiff4.core.encode_int64(0)


def add_bytes(source: bytes, diff: bytes) -> bytes:
    """Bytewise (source + diff) mod 256, in C (bsdiff4's patch loop with one add instruction)."""
    n = len(source)
    control = bsdiff4.core.encode_int64(n) + _ZERO64 + _ZERO64
    out: bytes = bsdiff4.core.patch(source, n, control, diff, b"")
    return out


def _file_size(f: BinaryIO) -> int:
    here = f.tell()
    size = f.seek(0, 2)
    f.seek(here)
    return size


class _Output:
    """Hashes the output and hands it to ``write`` in pieces of about ``CHUNK`` bytes."""

    def __init__(self, write: Callable[[bytes], object], hasher: hashlib._Hash) -> None:
        self._write = write
        self.hasher = hasher
        self._parts: list[bytes] = []
        self._size = 0

    def emit(self, data: bytes) -> None:
        self.hasher.update(data)
        self._parts.append(data)
        self._size += len(data)
        if self._size >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._write(self._parts[0] if len(self._parts) == 1 else b"".join(self._parts))
            self._parts, self._size = [], 0


class DeltaDecoder:
    """Checks a patch's header and table on construction; ``apply`` rebuilds the target.

    Raises (construction): ``DeltaFormatError`` for a malformed patch,
    ``DeltaSourceMismatchError`` when ``source`` has the wrong size or another sha256 than
    ``expected_source_sha256``, ``DeltaTargetMismatchError`` when the patch rebuilds another
    image than ``expected_target_sha256``. ``source`` may be None to only read the header
    (``info``); ``apply`` then needs it for a ``DELTA`` patch.
    """

    def __init__(
        self,
        source: BinaryIO | None,
        patch: BinaryIO,
        *,
        expected_target_sha256: str | None = None,
        expected_source_sha256: str | None = None,
    ) -> None:
        self._patch = patch
        self._source = source
        self._patch_size = _file_size(patch)
        patch.seek(0)
        self.header = parse_header(patch.read(HEADER_SIZE), self._patch_size)
        self._check_table()
        h = self.header
        if expected_target_sha256 is not None and expected_target_sha256 != h.target_sha256.hex():
            raise DeltaTargetMismatchError("the patch rebuilds another image than expected")
        if expected_source_sha256 is not None and expected_source_sha256 != h.source_sha256.hex():
            raise DeltaSourceMismatchError("the patch was made for another source image")
        if h.algorithm == Algorithm.DELTA and source is not None:
            size = _file_size(source)
            if size != h.source_size:
                raise DeltaSourceMismatchError(
                    f"source is {size} bytes, the patch needs {h.source_size}"
                )

    @property
    def info(self) -> DeltaInfo:
        h = self.header
        return DeltaInfo(
            algorithm=h.algorithm,
            source_size=h.source_size,
            source_sha256=h.source_sha256.hex(),
            target_size=h.target_size,
            target_sha256=h.target_sha256.hex(),
            segments=h.segments,
            patch_size=self._patch_size,
        )

    def _check_table(self) -> None:
        """Walk the whole table once (constant memory): contiguous output, streams tiling the
        rest of the file exactly."""
        offset, stream_at = 0, self.header.table_end
        for index in range(self.header.segments):
            seg = self.segment(index, expect_offset=offset)
            stream_at = check_tiling(seg, index, stream_at)
            offset += seg.output_len
        if stream_at != self._patch_size:
            raise DeltaFormatError("patch size does not match its segment table")

    def segment(self, index: int, *, expect_offset: int | None = None) -> Segment:
        if not 0 <= index < self.header.segments:
            raise DeltaFormatError(f"no segment {index}")
        self._patch.seek(HEADER_SIZE + index * SEGMENT_SIZE)
        data = self._patch.read(SEGMENT_SIZE)
        if expect_offset is None:
            expect_offset = int.from_bytes(data[:8], "little")
        return parse_segment(data, self.header, index, expect_offset)

    def verify_source(self) -> None:
        """Hash the whole source and compare (one read of the active slot).

        Raises ``DeltaSourceMismatchError``."""
        if self._source is None or self.header.algorithm != Algorithm.DELTA:
            return
        h = hashlib.sha256()
        self._source.seek(0)
        while chunk := self._source.read(CHUNK):
            h.update(chunk)
        if h.digest() != self.header.source_sha256:
            raise DeltaSourceMismatchError(
                "the source image is not the one this patch was made from"
            )

    def apply(
        self,
        write: Callable[[bytes], object],
        *,
        resume: Checkpoint | None = None,
        written: BinaryIO | None = None,
        on_checkpoint: Callable[[Checkpoint], None] | None = None,
    ) -> DeltaInfo:
        """Rebuild the target into ``write``; verify its sha256 at the end.

        ``resume`` starts at a checkpoint; ``written`` then gives the output bytes already
        written (read from offset 0) to rebuild the hash. ``on_checkpoint`` is called after
        each segment, once all its output was handed to ``write``.

        Raises: ``DeltaFormatError``, ``DeltaSourceMismatchError`` (source reads short),
        ``DeltaTargetMismatchError`` (rebuilt image has another sha256)."""
        if self.header.algorithm == Algorithm.DELTA and self._source is None:
            raise DeltaSourceMismatchError("this patch needs the source image")
        start = self._start_hash(resume, written)
        out = _Output(write, start[1])
        for index in range(start[0], self.header.segments):
            seg = self.segment(index)
            self._apply_segment(seg, out)
            out.flush()
            if on_checkpoint is not None:
                on_checkpoint(Checkpoint(index + 1, seg.output_offset + seg.output_len))
        if out.hasher.digest() != self.header.target_sha256:
            raise DeltaTargetMismatchError("the rebuilt image does not have the expected sha256")
        return self.info

    def _start_hash(
        self, resume: Checkpoint | None, written: BinaryIO | None
    ) -> tuple[int, hashlib._Hash]:
        hasher = hashlib.sha256()
        if resume is None or resume.segment == 0:
            return 0, hasher
        h = self.header
        end = h.target_size if resume.segment == h.segments else None
        if end is None:
            end = self.segment(resume.segment).output_offset
        if resume.output_offset != end or resume.segment > h.segments:
            raise DeltaFormatError("checkpoint does not match a segment boundary of this patch")
        if written is None:
            raise ValueError("resuming needs the output written so far")
        written.seek(0)
        left = end
        while left:
            chunk = written.read(min(CHUNK, left))
            if not chunk:
                raise DeltaTargetMismatchError(
                    "the output written so far is shorter than the checkpoint"
                )
            hasher.update(chunk)
            left -= len(chunk)
        return resume.segment, hasher

    def _apply_segment(self, seg: Segment, out: _Output) -> None:
        ops_r, extra_r = StreamReader(self._patch, seg.ops), StreamReader(self._patch, seg.extra)
        diff_r = open_stream(self._patch, seg.diff)
        reader = OpReader()
        src, produced = seg.source_start, 0
        while True:
            item = reader.next_op(final=ops_r.remaining == 0)
            if item is None:
                if ops_r.remaining == 0:
                    break
                reader.feed(ops_r.read(READ_SIZE))
                continue
            op, arg = item
            if op == Op.SEEK:
                src = self._seek(src, arg)
                continue
            if produced + arg > seg.output_len:
                raise DeltaFormatError("instructions produce more than the segment's output")
            produced += arg
            if op == Op.INSERT:
                self._insert(arg, extra_r, out)
            else:
                src = self._from_source(op, src, arg, diff_r, out)
        if produced != seg.output_len:
            raise DeltaFormatError("instructions produce less than the segment's output")
        for r in (ops_r, diff_r, extra_r):
            r.finish()

    def _seek(self, src: int, delta: int) -> int:
        if self.header.algorithm != Algorithm.DELTA:
            raise DeltaFormatError("a full-image patch may not read the source")
        src += delta
        if not 0 <= src <= self.header.source_size:
            raise DeltaFormatError("instruction seeks outside the source")
        return src

    @staticmethod
    def _insert(count: int, extra: StreamReader, out: _Output) -> None:
        while count:
            k = min(count, CHUNK)
            out.emit(extra.read_exact(k))
            count -= k

    def _from_source(
        self, op: Op, src: int, count: int, diff: StreamReader | SplitReader, out: _Output
    ) -> int:
        if self.header.algorithm != Algorithm.DELTA or self._source is None:
            raise DeltaFormatError("a full-image patch may not read the source")
        if src + count > self.header.source_size:
            raise DeltaFormatError("instruction reads beyond the end of the source")
        first = True
        while count:
            k = min(count, CHUNK)
            self._source.seek(src)
            data = self._source.read(k)
            if len(data) != k:
                raise DeltaSourceMismatchError("the source image is shorter than it was")
            if op == Op.ADD:
                data = add_bytes(data, diff.difference(data, first))
                first = False
            out.emit(data)
            src += k
            count -= k
        return src
