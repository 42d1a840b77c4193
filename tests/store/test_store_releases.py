"""Releases, and the TUF metadata table (one writer wins a name)."""

from __future__ import annotations

import threading

import pytest

from otaguard.errors import ConflictError, NotFoundError
from otaguard.store.database import SqlMetadataStore, Store

from .helpers import add_release


def test_releases(store: Store) -> None:
    r1 = add_release(store, "1.0.0")
    r2 = add_release(store, "2.0.0", hardware=("board-a", "board-b"), security_version=2)
    assert [r.target_name for r in store.list_releases()] == [r1.target_name, r2.target_name]
    got = store.get_release(r2.target_name)
    assert (got.version, got.hardware, got.security_version, got.length, got.custom) == (
        "2.0.0",
        ["board-a", "board-b"],
        2,
        1000,
        {"notes": "2.0.0"},
    )
    # Re-publishing the same content is accepted; other content under the name is not.
    assert add_release(store, "1.0.0") == r1
    with pytest.raises(ConflictError):
        store.upsert_release(
            r1.target_name,
            version="1.0.0",
            hardware=["board-a"],
            security_version=0,
            sha256="f" * 64,
            length=1,
            custom={},
        )
    assert store.get_release(r1.target_name).sha256 == r1.sha256
    with pytest.raises(NotFoundError):
        store.get_release("nope")


def test_metadata_store(store: Store) -> None:
    md = SqlMetadataStore(store)
    assert md.get("1.root.json") is None
    md.put("1.root.json", b"one")
    assert md.get("1.root.json") == b"one"
    with pytest.raises(ConflictError):
        md.put("1.root.json", b"other")
    assert md.get("1.root.json") == b"one"
    md.put("timestamp.json", b"t1")
    md.put("timestamp.json", b"t2", replace=True)
    assert md.get("timestamp.json") == b"t2"


def test_metadata_store_concurrent_writers_of_one_name(store: Store) -> None:
    """Several writers create the same versioned file at once: exactly one wins, the others
    get ConflictError, and the stored bytes are the winner's."""
    md = SqlMetadataStore(store)
    results: dict[int, str] = {}
    barrier = threading.Barrier(6)

    def write(i: int) -> None:
        barrier.wait()
        try:
            md.put("7.snapshot.json", f"writer-{i}".encode())
            results[i] = "ok"
        except ConflictError:
            results[i] = "conflict"

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [i for i, r in results.items() if r == "ok"]
    assert len(results) == 6
    assert len(winners) == 1
    assert md.get("7.snapshot.json") == f"writer-{winners[0]}".encode()
