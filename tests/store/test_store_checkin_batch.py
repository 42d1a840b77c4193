"""``Store.check_in_many``: many devices' check-ins in one transaction (the server's group
commit). Each request is judged on its own: a refused one records nothing and does not stop
the others; offers and their counters are what one-by-one check-ins would give."""

from __future__ import annotations

import threading

import pytest

from otaguard.errors import (
    AuthError,
    CompatibilityError,
    ManifestError,
    NotFoundError,
    StoreBusyError,
)
from otaguard.store.database import CheckinRequest, Offer, Reported, Store

from .helpers import HW, add_devices, add_release


def reported(version: str = "1.0.0", hardware: str = HW, slot: str = "a") -> Reported:
    return Reported(hardware, version, slot, 3, "agent-9")


def given(report: Reported) -> object:
    return lambda _key: report


def refuse(_key: str | None) -> Reported:
    raise ManifestError("signature does not verify")


def test_each_request_judged_on_its_own(store: Store) -> None:
    add_devices(store, 4)
    before = {d: store.get_device(d) for d in ("dev-000", "dev-001", "dev-002", "dev-003")}
    outcomes = store.check_in_many(
        [
            CheckinRequest("dev-000", given(reported("1.1.0")), "secret-dev-000"),
            CheckinRequest("dev-001", given(reported("1.1.0")), "wrong-secret"),
            CheckinRequest("ghost", given(reported("1.1.0")), "secret-ghost"),
            CheckinRequest("dev-002", refuse),
            CheckinRequest("dev-003", given(reported("1.1.0", hardware="other-board"))),
            CheckinRequest("nobody", given(reported())),
        ]
    )
    assert [type(o.error) for o in outcomes] == [
        type(None),
        AuthError,
        AuthError,  # unknown device with a credential: the same answer as a wrong secret
        ManifestError,
        CompatibilityError,
        NotFoundError,
    ]
    assert all(o.offer is None for o in outcomes)
    accepted = store.get_device("dev-000")
    assert (accepted.current_version, accepted.security_version, accepted.agent_version) == (
        "1.1.0",
        3,
        "agent-9",
    )
    assert accepted.last_seen is not None
    for device_id in ("dev-001", "dev-002", "dev-003"):  # refused: nothing recorded
        now = store.get_device(device_id)
        assert (now.current_version, now.last_seen) == (
            before[device_id].current_version,
            before[device_id].last_seen,
        )


def test_report_callback_gets_the_registered_key(store: Store) -> None:
    store.register_device("k1", HW, "c1", manifest_key='{"keyid": "abc"}')
    store.register_device("k2", HW, "c2")
    seen: dict[str, str | None] = {}

    def remember(device_id: str) -> object:
        def report(key: str | None) -> Reported:
            seen[device_id] = key
            return reported()

        return report

    store.check_in_many(
        [CheckinRequest("k1", remember("k1")), CheckinRequest("k2", remember("k2"))]
    )  # type: ignore[arg-type]
    assert seen == {"k1": '{"keyid": "abc"}', "k2": None}


def test_offers_and_counters_match_one_by_one(store: Store) -> None:
    ids = add_devices(store, 3)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"devices": ids[:2]}, created_by="t"
    )
    outcomes = store.check_in_many(
        [
            CheckinRequest(ids[0], given(reported())),
            CheckinRequest(ids[1], given(reported())),
            CheckinRequest(ids[0], given(reported())),  # the same device twice in one batch
            CheckinRequest(ids[2], given(reported())),  # not in the deployment
        ]
    )
    assert [o.offer for o in outcomes] == [
        Offer(dep.id, rel.target_name, 1),
        Offer(dep.id, rel.target_name, 1),
        Offer(dep.id, rel.target_name, 2),
        None,
    ]
    # The counters were stored: the next check-in continues from them.
    (again,) = store.check_in_many([CheckinRequest(ids[0], given(reported()))])
    assert again.offer == Offer(dep.id, rel.target_name, 3)


def test_newest_active_deployment_decides(store: Store) -> None:
    ids = add_devices(store, 1)
    old = add_release(store, "2.0.0")
    new = add_release(store, "3.0.0")
    store.create_deployment(
        name="old", target_name=old.target_name, selector={"devices": ids}, created_by="t"
    )
    newer = store.create_deployment(
        name="new", target_name=new.target_name, selector={"devices": ids}, created_by="t"
    )
    (outcome,) = store.check_in_many([CheckinRequest(ids[0], given(reported()))])
    assert outcome.offer is not None
    assert (outcome.offer.deployment_id, outcome.offer.target_name) == (
        newer.id,
        new.target_name,
    )
    store.cancel_deployment(newer.id)
    (outcome,) = store.check_in_many([CheckinRequest(ids[0], given(reported()))])
    assert outcome.offer is not None
    assert outcome.offer.target_name == old.target_name


def test_an_unexpected_error_fails_the_whole_batch_and_records_nothing(store: Store) -> None:
    ids = add_devices(store, 2)

    def broken(_key: str | None) -> Reported:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        store.check_in_many(
            [CheckinRequest(ids[0], given(reported("9.9.9"))), CheckinRequest(ids[1], broken)]
        )
    assert store.get_device(ids[0]).current_version != "9.9.9"


def test_empty_batch(store: Store) -> None:
    assert store.check_in_many([]) == []


def test_no_wait_refuses_while_another_writer_holds_sqlite(tmp_path: object) -> None:
    store = Store(f"sqlite:///{tmp_path}/busy.db")
    store.migrate()
    try:
        add_devices(store, 1)
        holding = threading.Event()
        release = threading.Event()

        def writer() -> None:
            with store.session():
                holding.set()
                release.wait(10)

        t = threading.Thread(target=writer)
        t.start()
        try:
            assert holding.wait(10)
            with pytest.raises(StoreBusyError):
                store.check_in_many([CheckinRequest("dev-000", given(reported()))], wait=False)
        finally:
            release.set()
            t.join()
        (outcome,) = store.check_in_many([CheckinRequest("dev-000", given(reported()))])
        assert outcome.error is None
    finally:
        store.close()


def test_no_wait_refuses_at_once_while_another_process_holds_sqlite(tmp_path: object) -> None:
    """Another process's write transaction (here a second SQLite connection, as a CLI command
    would open) makes a no-wait check-in fail at once instead of waiting in SQLite's busy
    handler (30 s), and the waiting path still works once it is gone."""
    import sqlite3
    import time

    path = f"{tmp_path}/other.db"
    store = Store(f"sqlite:///{path}")
    store.migrate()
    try:
        add_devices(store, 1)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(StoreBusyError, match="another process"):
                store.check_in_many([CheckinRequest("dev-000", given(reported()))], wait=False)
            assert time.monotonic() - started < 5
        finally:
            other.execute("ROLLBACK")
            other.close()
        (outcome,) = store.check_in_many(
            [CheckinRequest("dev-000", given(reported("1.2.3")))], wait=False
        )
        assert outcome.error is None
        assert store.get_device("dev-000").current_version == "1.2.3"
    finally:
        store.close()
