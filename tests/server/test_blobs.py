from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from otaguard.errors import NotFoundError, StoreError, VerificationError
from otaguard.store.blobs import LocalBlobStore, iter_file


def test_put_and_read_back(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = b"x" * 200_000
    digest, size = store.put_stream(
        [data[:1000], data[1000:]], hashlib.sha256(data).hexdigest(), 10**6
    )
    assert (digest, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert store.exists(digest)
    assert store.size(digest) == len(data)
    assert b"".join(iter_file(store.open(digest), 100, 50)) == data[100:150]


def test_mismatch_and_oversize_leave_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(VerificationError):
        store.put_bytes(b"abc", "0" * 64)
    with pytest.raises(StoreError, match="limit"):
        store.put_stream([b"a" * 10, b"b" * 10], None, 15)
    assert not store.exists("0" * 64)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_bad_digest_and_missing_blob(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(StoreError, match="not a sha256"):
        store.exists("../../etc/passwd")
    with pytest.raises(NotFoundError):
        store.open("a" * 64)
