"""The ``BlobStore`` contract, checked on the local directory store and on an in-memory one
(the server is run on the latter in tests/test_server_blobs_http.py)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from otaguard.errors import NotFoundError, PayloadTooLargeError, StoreError, VerificationError
from otaguard.store.blobs import BlobStore, LocalBlobStore

from .memory_blobs import MemoryBlobStore

Factory = Callable[[Path], BlobStore]
FACTORIES: dict[str, Factory] = {
    "local": lambda p: LocalBlobStore(p / "blobs"),
    "memory": lambda _p: MemoryBlobStore(),
}


@pytest.fixture(params=sorted(FACTORIES))
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return FACTORIES[request.param](tmp_path)


DATA = bytes(range(256)) * 1000  # 256000 bytes
DIGEST = hashlib.sha256(DATA).hexdigest()


def _chunks(data: bytes, n: int = 7777) -> list[bytes]:
    return [data[i : i + n] for i in range(0, len(data), n)]


def test_put_and_read_ranges(blobs: BlobStore) -> None:
    assert not blobs.exists(DIGEST)
    assert blobs.put_stream(_chunks(DATA), DIGEST, len(DATA)) == (DIGEST, len(DATA))
    assert blobs.exists(DIGEST)
    assert blobs.size(DIGEST) == len(DATA)
    assert b"".join(blobs.read(DIGEST)) == DATA
    assert b"".join(blobs.read(DIGEST, 1000)) == DATA[1000:]
    assert b"".join(blobs.read(DIGEST, 1000, 70_000)) == DATA[1000:71_000]
    assert b"".join(blobs.read(DIGEST, len(DATA) - 5, 100)) == DATA[-5:]
    assert b"".join(blobs.read(DIGEST, len(DATA))) == b""
    assert b"".join(blobs.read(DIGEST, 10, 0)) == b""
    # Without an expected hash the store names the blob itself; storing again is harmless.
    assert blobs.put_stream([DATA], None, len(DATA)) == (DIGEST, len(DATA))
    assert b"".join(blobs.read(DIGEST)) == DATA


def test_refusals_store_nothing(blobs: BlobStore) -> None:
    with pytest.raises(VerificationError):
        blobs.put_stream(_chunks(DATA), "0" * 64, len(DATA))
    with pytest.raises(PayloadTooLargeError):
        blobs.put_stream(_chunks(DATA), DIGEST, len(DATA) - 1)
    assert isinstance(PayloadTooLargeError("x"), StoreError)
    assert not blobs.exists(DIGEST)
    assert not blobs.exists("0" * 64)
    with pytest.raises(NotFoundError):
        blobs.size(DIGEST)
    with pytest.raises(NotFoundError):
        blobs.read(DIGEST)


def test_digests_are_checked(blobs: BlobStore) -> None:
    for bad in ("../../etc/passwd", "A" * 64, "a" * 63, ""):
        with pytest.raises(StoreError):
            blobs.exists(bad)
        with pytest.raises(StoreError):
            blobs.read(bad)
    with pytest.raises(StoreError):
        blobs.put_stream([b"x"], "nope", 10)
    blobs.put_stream([DATA], DIGEST, len(DATA))
    with pytest.raises(StoreError):
        blobs.read(DIGEST, -1)


def test_concurrent_puts_of_one_blob(blobs: BlobStore) -> None:
    barrier = threading.Barrier(6)
    results: list[tuple[str, int]] = []

    def put() -> None:
        barrier.wait()
        results.append(blobs.put_stream(_chunks(DATA, 5000), DIGEST, len(DATA)))

    threads = [threading.Thread(target=put) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [(DIGEST, len(DATA))] * 6
    assert b"".join(blobs.read(DIGEST)) == DATA


def test_local_store_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "b")
    with pytest.raises(PayloadTooLargeError):
        store.put_stream(_chunks(DATA), None, 10)
    with pytest.raises(VerificationError):
        store.put_stream(_chunks(DATA), "1" * 64, len(DATA))
    assert [p for p in (tmp_path / "b").rglob("*") if p.is_file()] == []
