"""Registration, device authentication, tags, and device listing (filters and pages in SQL)."""

from __future__ import annotations

import pytest

from otaguard.errors import AuthError, CompatibilityError, ConflictError, NotFoundError
from otaguard.store.database import Store

from .helpers import HW, check_in


def test_register_and_authenticate(store: Store) -> None:
    view = store.register_device("d1", HW, "s3cret", ["lab", "eu", "lab"])
    assert (view.id, view.hardware, view.tags, view.update_state) == (
        "d1",
        HW,
        ["eu", "lab"],
        "idle",
    )
    store.authenticate_device("d1", "s3cret")
    with pytest.raises(AuthError):
        store.authenticate_device("d1", "wrong")
    with pytest.raises(AuthError):
        store.authenticate_device("nobody", "s3cret")
    with pytest.raises(ConflictError):
        store.register_device("d1", HW, "other")
    # The refused duplicate changed nothing.
    store.authenticate_device("d1", "s3cret")
    assert store.get_device("d1").tags == ["eu", "lab"]
    with pytest.raises(NotFoundError):
        store.get_device("nobody")


def test_api_tokens(store: Store) -> None:
    store.add_api_token("alice", "tok-a")
    store.add_api_token("alice", "tok-a")  # idempotent
    assert store.check_api_token("tok-a") == "alice"
    with pytest.raises(AuthError):
        store.check_api_token("tok-b")


def test_check_in_records_what_the_device_reports(store: Store) -> None:
    store.register_device("d1", HW, "c")
    assert check_in(store, "d1", version="1.2.3") is None
    d = store.get_device("d1")
    assert (d.current_version, d.active_slot, d.agent_version) == ("1.2.3", "a", "test")
    assert d.last_seen is not None
    with pytest.raises(CompatibilityError):
        check_in(store, "d1", hardware="other-board")
    with pytest.raises(NotFoundError):
        check_in(store, "nobody")


def test_set_tags(store: Store) -> None:
    store.register_device("d1", HW, "c", ["a", "b"])
    assert store.set_device_tags("d1", ["b", "c", "c"]).tags == ["b", "c"]
    assert store.get_device("d1").tags == ["b", "c"]
    assert store.set_device_tags("d1", []).tags == []
    with pytest.raises(NotFoundError):
        store.set_device_tags("nobody", ["x"])


def test_list_filters_and_pages(store: Store) -> None:
    for i in range(25):
        tags = ["even"] if i % 2 == 0 else ["odd"]
        if i % 5 == 0:
            tags.append("five")
        store.register_device(f"d{i:02d}", HW if i < 20 else "board-b", "c", tags)
        if i < 10:
            check_in(store, f"d{i:02d}", version="2.0.0", hardware=HW)

    items, total = store.list_devices()
    assert total == 25
    assert [d.id for d in items] == [f"d{i:02d}" for i in range(25)]

    items, total = store.list_devices(tag="even", limit=5, offset=5)
    assert total == 13
    assert [d.id for d in items] == ["d10", "d12", "d14", "d16", "d18"]

    items, total = store.list_devices(tag="five", hardware="board-b")
    assert (total, [d.id for d in items]) == (1, ["d20"])

    items, total = store.list_devices(version="2.0.0", tag="odd")
    assert (total, [d.id for d in items]) == (5, ["d01", "d03", "d05", "d07", "d09"])

    items, total = store.list_devices(tag="missing")
    assert (items, total) == ([], 0)

    items, total = store.list_devices(offset=24, limit=10)
    assert (total, [d.id for d in items]) == (25, ["d24"])

    # Every page of a filter together is the filter, in order, without repeats.
    seen = []
    for offset in range(0, 13, 4):
        seen += [d.id for d in store.list_devices(tag="even", limit=4, offset=offset)[0]]
    assert seen == [f"d{i:02d}" for i in range(0, 25, 2)]
