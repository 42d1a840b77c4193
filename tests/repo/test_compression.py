"""Streaming decompression of release artifacts (repo/compression.py): every supported format
round-trips, output reaches the sink in bounded pieces whatever the ratio, more output than
the signed image length is refused (a decompression bomb), and corrupt input is refused."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
from pathlib import Path

import pytest
import zstandard

from otaguard.errors import VerificationError
from otaguard.repo.compression import (
    OUT_CHUNK,
    Decompressor,
    compression_of,
    measure_decompressed,
)

COMPRESS = {
    "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
    "xz": lzma.compress,
    "gzip": gzip.compress,
}


def run(kind: str, data: bytes, limit: int, feed: int = 4096) -> tuple[bytes, int]:
    pieces: list[bytes] = []
    dec = Decompressor(kind, pieces.append, limit)
    for i in range(0, len(data), feed):
        dec.feed(data[i : i + feed])
    dec.finish()
    return b"".join(pieces), max((len(p) for p in pieces), default=0)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_round_trip_in_bounded_pieces(kind: str) -> None:
    image = os.urandom(300_000) + bytes(8 << 20)  # 8 MiB of zeros compress ~1000:1
    out, largest = run(kind, COMPRESS[kind](image), len(image))
    assert out == image
    assert largest <= OUT_CHUNK


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_more_output_than_signed_is_refused(kind: str) -> None:
    image = bytes(4 << 20)
    with pytest.raises(VerificationError, match="larger than the signed"):
        run(kind, COMPRESS[kind](image), len(image) - 1)
    run(kind, COMPRESS[kind](image), len(image))  # control: the exact size passes


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_corrupt_stream_is_refused(kind: str) -> None:
    data = bytearray(COMPRESS[kind](os.urandom(100_000)))
    data[:8] = b"garbage!"
    with pytest.raises(VerificationError, match="corrupt"):
        run(kind, bytes(data), 1 << 20)


def test_names_and_measure(tmp_path: Path) -> None:
    assert [compression_of(n) for n in ("a.zst", "b.xz", "c.gz", "d.ext4")] == [
        "zstd",
        "xz",
        "gzip",
        None,
    ]
    image = os.urandom(1000)
    path = tmp_path / "x.xz"
    path.write_bytes(lzma.compress(image))
    digest, length = measure_decompressed(path, "xz")
    assert length == 1000
    assert digest == hashlib.sha256(image).hexdigest()
