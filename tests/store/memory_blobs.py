"""A ``BlobStore`` with no files at all: proof that the server needs only the protocol."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator

from otaguard.errors import NotFoundError, PayloadTooLargeError, StoreError, VerificationError
from otaguard.store.blobs import check_digest


class MemoryBlobStore:
    def __init__(self, chunk: int = 1000) -> None:
        self.blobs: dict[str, bytes] = {}
        self.chunk = chunk
        self.reads: list[tuple[str, int, int | None]] = []
        self._lock = threading.Lock()

    def put_stream(
        self, chunks: Iterable[bytes], expected_sha256: str | None, max_bytes: int
    ) -> tuple[str, int]:
        if expected_sha256 is not None:
            check_digest(expected_sha256)
        buf = bytearray()
        for c in chunks:
            buf += c
            if len(buf) > max_bytes:
                raise PayloadTooLargeError(f"blob larger than the limit of {max_bytes} bytes")
        digest = hashlib.sha256(buf).hexdigest()
        if expected_sha256 is not None and digest != expected_sha256:
            raise VerificationError("hash mismatch")
        with self._lock:
            self.blobs[digest] = bytes(buf)
        return digest, len(buf)

    def exists(self, digest: str) -> bool:
        return check_digest(digest) in self.blobs

    def size(self, digest: str) -> int:
        try:
            return len(self.blobs[check_digest(digest)])
        except KeyError as exc:
            raise NotFoundError(f"no blob {digest}") from exc

    def read(self, digest: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        if start < 0 or (length is not None and length < 0):
            raise StoreError("negative blob range")
        try:
            data = self.blobs[check_digest(digest)]
        except KeyError as exc:
            raise NotFoundError(f"no blob {digest}") from exc
        self.reads.append((digest, start, length))
        end = len(data) if length is None else min(len(data), start + length)

        def chunks() -> Iterator[bytes]:
            for i in range(start, end, self.chunk):
                yield data[i : min(end, i + self.chunk)]

        return chunks()
