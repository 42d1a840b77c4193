"""Compressed release artifacts: which compressions exist, and decompressing one as a stream.

A release artifact is installed into a slot unchanged, or, when it is published compressed
(``.zst``, ``.xz``, ``.gz``), decompressed on the way into the slot. Both ends use this module:
``release add`` names the compression and measures the decompressed image (its sha256 and
length go into the signed custom metadata, see ``repo/images.py``) and the agent decompresses
while it streams, with bounded memory: each call hands at most ``OUT_CHUNK`` bytes to the sink,
whatever the ratio, and more output than the signed image length is refused (a decompression
bomb stops at the signed size). zstd comes from the ``zstandard`` package (streaming, no
whole-frame buffering); xz and gzip from the standard library.
"""

from __future__ import annotations

import hashlib
import lzma
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, BinaryIO, cast

import zstandard

from otaguard.errors import VerificationError

OUT_CHUNK = 1 << 20
COMPRESSIONS = {".zst": "zstd", ".xz": "xz", ".gz": "gzip"}

Sink = Callable[[bytes], None]


def compression_of(name: str) -> str | None:
    """The compression a file name says (by its suffix), or None for a raw image."""
    for suffix, kind in COMPRESSIONS.items():
        if name.endswith(suffix):
            return kind
    return None


class _SinkWriter:
    """The file-like object ``zstandard``'s stream writer writes its output to."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def write(self, data: bytes) -> int:
        self.sink(bytes(data))
        return len(data)


class Decompressor:
    """Decompress ``kind`` ("zstd", "xz", "gzip") fed chunk by chunk; output goes to ``sink``
    in pieces of at most ``OUT_CHUNK`` bytes. ``limit``: the most output accepted in all."""

    def __init__(self, kind: str, sink: Sink, limit: int) -> None:
        self.kind = kind
        self.limit = limit
        self.produced = 0
        self._sink = sink
        self._zstd = None
        self._std: lzma.LZMADecompressor | zlib._Decompress | None = None
        if kind == "zstd":
            dctx = zstandard.ZstdDecompressor()
            writer = cast(IO[bytes], _SinkWriter(self._emit))
            self._zstd = dctx.stream_writer(writer, write_size=OUT_CHUNK, closefd=False)
        elif kind == "xz":
            self._std = lzma.LZMADecompressor()
        elif kind == "gzip":
            self._std = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        else:
            raise VerificationError(f"unknown compression {kind!r}")

    def _emit(self, data: bytes) -> None:
        self.produced += len(data)
        if self.produced > self.limit:
            raise VerificationError(
                f"decompressed image is larger than the signed {self.limit} bytes"
            )
        self._sink(data)

    def feed(self, chunk: bytes) -> None:
        try:
            if self._zstd is not None:
                self._zstd.write(chunk)
            elif isinstance(self._std, lzma.LZMADecompressor):
                self._feed_lzma(self._std, chunk)
            elif self._std is not None:
                self._feed_zlib(self._std, chunk)
        except (zstandard.ZstdError, lzma.LZMAError, zlib.error) as exc:
            raise VerificationError(f"{self.kind} stream is corrupt: {exc}") from exc

    def _feed_lzma(self, d: lzma.LZMADecompressor, chunk: bytes) -> None:
        data = chunk
        while not d.eof:
            out = d.decompress(data, OUT_CHUNK)
            data = b""
            if out:
                self._emit(out)
            if d.needs_input:
                return

    def _feed_zlib(self, d: zlib._Decompress, chunk: bytes) -> None:
        data = chunk
        while data and not d.eof:
            out = d.decompress(data, OUT_CHUNK)
            data = d.unconsumed_tail
            if out:
                self._emit(out)

    def finish(self) -> None:
        """The whole artifact was fed: flush what the decompressor still holds."""
        try:
            if self._zstd is not None:
                self._zstd.flush()  # type: ignore[no-untyped-call]
        except zstandard.ZstdError as exc:
            raise VerificationError(f"{self.kind} stream is corrupt: {exc}") from exc


def measure_decompressed(path: Path, kind: str, limit: int = 1 << 40) -> tuple[str, int]:
    """The sha256 (hex) and length of ``path`` decompressed, streamed (for ``release add``)."""
    digest = hashlib.sha256()
    length = 0

    def sink(data: bytes) -> None:
        nonlocal length
        digest.update(data)
        length += len(data)

    dec = Decompressor(kind, sink, limit)
    with path.open("rb") as fh:
        _feed_file(dec, fh)
    return digest.hexdigest(), length


def _feed_file(dec: Decompressor, fh: BinaryIO) -> None:
    while chunk := fh.read(OUT_CHUNK):
        dec.feed(chunk)
    dec.finish()
