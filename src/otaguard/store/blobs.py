"""Content-addressed blob store for artifacts.

Blobs are named by their SHA-256; a blob is written to a temporary file while hashed, checked
against the expected digest, fsynced and renamed into place, so a reader never sees a partial
blob and a crash leaves at most a temporary file. Anything that implements ``BlobStore`` (an
object store, say) can replace the local directory.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from otaguard.errors import NotFoundError, PayloadTooLargeError, StoreError, VerificationError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 18  # 256 KiB: one server thread-pool hop per chunk served


def check_digest(digest: str) -> str:
    if not _HEX64.match(digest):
        raise StoreError(f"not a sha256 hex digest: {digest[:80]!r}")
    return digest


class BlobStore(Protocol):
    """What the server needs of an artifact store; all it uses (uploads, serving with Range,
    static export). Digests are lowercase sha256 hex; anything else raises ``StoreError``."""

    def put_stream(
        self, chunks: Iterable[bytes], expected_sha256: str | None, max_bytes: int
    ) -> tuple[str, int]:
        """Store the stream; return ``(sha256, size)``. Nothing is stored when the stream is
        longer than ``max_bytes`` (``PayloadTooLargeError``) or its hash is not the expected
        one (``VerificationError``); a stored blob is never partly visible."""
        ...

    def exists(self, digest: str) -> bool: ...

    def size(self, digest: str) -> int:
        """Size in bytes; ``NotFoundError`` when absent."""
        ...

    def read(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Bytes ``start .. start+length`` (to the end when ``length`` is None) in chunks;
        ``NotFoundError`` (raised at the call, before any chunk) when absent."""
        ...


class LocalBlobStore:
    """Blobs in ``root/ab/abcdef...``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        check_digest(digest)
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as exc:
            raise NotFoundError(f"no blob {digest}") from exc

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no blob {digest}") from exc

    def read(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        if start < 0 or (length is not None and length < 0):
            raise StoreError("negative blob range")
        return iter_file(self.open(digest), start, length)

    def put_stream(
        self, chunks: Iterable[bytes], expected_sha256: str | None, max_bytes: int
    ) -> tuple[str, int]:
        """Store the stream; return (sha256, size). Refuses over-size and hash mismatches."""
        if expected_sha256 is not None:
            check_digest(expected_sha256)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(exist_ok=True)
        tmp = tmp_dir / f"{os.getpid()}-{id(chunks)}-{os.urandom(4).hex()}"
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "wb") as fh:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLargeError(
                            f"blob larger than the limit of {max_bytes} bytes"
                        )
                    h.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            digest = h.hexdigest()
            if expected_sha256 is not None and digest != expected_sha256:
                raise VerificationError(
                    f"blob hash {digest} does not match the expected {expected_sha256}"
                )
            final = self.path(digest)
            final.parent.mkdir(exist_ok=True)
            os.replace(tmp, final)
            return digest, size
        finally:
            tmp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes, expected_sha256: str | None = None) -> tuple[str, int]:
        return self.put_stream([data], expected_sha256, len(data))


def iter_file(fh: BinaryIO, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """Read ``length`` bytes (or to EOF) from ``start`` in chunks; closes the file at the end."""
    try:
        fh.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            n = CHUNK if remaining is None else min(CHUNK, remaining)
            chunk = fh.read(n)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        fh.close()
