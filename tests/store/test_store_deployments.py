"""Deployments: creation with compatibility checks, offers and counters on check-in, status
events and the transitions they cause, completion and cancellation."""

from __future__ import annotations

import pytest

from otaguard.errors import CompatibilityError, ConflictError, NotFoundError
from otaguard.fleet.status import UpdateEvent
from otaguard.store.database import MAX_DETAIL_CHARS, Offer, Store

from .helpers import HW, add_devices, add_release, check_in


def report(
    store: Store,
    device_id: str,
    event: UpdateEvent,
    deployment_id: int | None,
    report_id: str | None = None,
    **detail: object,
) -> object:
    return store.record_event(
        device_id,
        event=event,
        deployment_id=deployment_id,
        version="2.0.0" if event in (UpdateEvent.BOOTED, UpdateEvent.COMMITTED) else "1.0.0",
        slot="b" if event in (UpdateEvent.BOOTED, UpdateEvent.COMMITTED) else "a",
        detail=dict(detail),
        report_id=report_id,
    )


def test_create_checks_release_and_hardware(store: Store) -> None:
    add_devices(store, 3)
    add_devices(store, 2, hardware="board-b", prefix="b")
    rel = add_release(store, "2.0.0")
    with pytest.raises(NotFoundError):
        store.create_deployment(
            name="x", target_name="nope", selector={"all": True}, created_by="t"
        )
    with pytest.raises(CompatibilityError, match="no selected device"):
        store.create_deployment(
            name="x", target_name=rel.target_name, selector={"hardware": "board-b"}, created_by="t"
        )
    assert store.list_deployments() == []
    # "all" picks both hardware types; only the compatible ones are included.
    dep = store.create_deployment(
        name="r1", target_name=rel.target_name, selector={"all": True}, created_by="alice"
    )
    assert (dep.state, dep.counts, dep.total, dep.created_by) == (
        "active",
        {"pending": 3},
        3,
        "alice",
    )
    assert [t["device_id"] for t in store.deployment_targets(dep.id)] == [
        "dev-000",
        "dev-001",
        "dev-002",
    ]


def test_tag_and_device_selectors(store: Store) -> None:
    store.register_device("a1", HW, "c", ["canary"])
    store.register_device("a2", HW, "c", ["canary", "eu"])
    store.register_device("a3", HW, "c", ["eu"])
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="canary", target_name=rel.target_name, selector={"tag": "canary"}, created_by="t"
    )
    assert [t["device_id"] for t in store.deployment_targets(dep.id)] == ["a1", "a2"]
    dep2 = store.create_deployment(
        name="pick",
        target_name=rel.target_name,
        selector={"devices": ["a3", "a2", "ghost"], "tag": "eu"},
        created_by="t",
    )
    assert [t["device_id"] for t in store.deployment_targets(dep2.id)] == ["a2", "a3"]
    assert [d.id for d in store.list_deployments()] == [dep.id, dep2.id]


def test_offers_counters_and_full_success(store: Store) -> None:
    (dev,) = add_devices(store, 1)
    assert check_in(store, dev) is None
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"all": True}, created_by="t"
    )
    offers = [check_in(store, dev) for _ in range(3)]
    assert offers == [Offer(dep.id, rel.target_name, n) for n in (1, 2, 3)]

    report(store, dev, UpdateEvent.DOWNLOADING, dep.id)
    assert store.deployment_targets(dep.id)[0]["status"] == "in_progress"
    assert store.get_device(dev).update_state == "downloading"
    # Still offered while in progress (the agent resumes), with a new counter.
    assert check_in(store, dev) == Offer(dep.id, rel.target_name, 4)
    for ev in (
        UpdateEvent.DOWNLOADED,
        UpdateEvent.VERIFIED,
        UpdateEvent.INSTALLED,
        UpdateEvent.REBOOTING,
        UpdateEvent.BOOTED,
    ):
        report(store, dev, ev, dep.id)
        assert store.get_deployment(dep.id).state == "active"
    report(store, dev, UpdateEvent.COMMITTED, dep.id)
    got = store.get_deployment(dep.id)
    assert (got.state, got.counts) == ("completed", {"succeeded": 1})
    d = store.get_device(dev)
    assert (d.current_version, d.active_slot, d.update_state) == ("2.0.0", "b", "committed")
    assert check_in(store, dev, version="2.0.0") is None
    assert [e.event for e in store.events(dev)] == [
        "downloading",
        "downloaded",
        "verified",
        "installed",
        "rebooting",
        "booted",
        "committed",
    ]


def test_failures_keep_reasons_and_rollback_overrides_success(store: Store) -> None:
    a, b, c = add_devices(store, 3)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"all": True}, created_by="t"
    )
    report(store, a, UpdateEvent.REFUSED, dep.id, error="assignment expired")
    report(store, b, UpdateEvent.COMMITTED, dep.id)
    assert store.get_deployment(dep.id).state == "active"
    report(store, c, UpdateEvent.FAILED, dep.id, reason="x" * (MAX_DETAIL_CHARS + 50))
    got = store.get_deployment(dep.id)
    assert (got.state, got.counts) == ("completed", {"failed": 2, "succeeded": 1})
    # A device that committed and then fell back is not a success.
    report(store, b, UpdateEvent.ROLLED_BACK, dep.id, reason="bootloader fell back to a")
    targets = {t["device_id"]: t for t in store.deployment_targets(dep.id)}
    assert targets[a]["detail"] == "assignment expired"
    assert targets[b]["status"] == "failed"
    assert targets[b]["detail"] == "bootloader fell back to a"
    assert len(targets[c]["detail"]) == MAX_DETAIL_CHARS
    assert store.get_deployment(dep.id).counts == {"failed": 3}
    # Failed devices are not offered the deployment again.
    assert check_in(store, a) is None


def test_reports_are_bounded_and_foreign_reports_kept_not_applied(store: Store) -> None:
    a, b = add_devices(store, 2)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"devices": [a]}, created_by="t"
    )
    detail = {f"k{i}": i for i in range(40)}
    ev = store.record_event(
        b,
        event=UpdateEvent.FAILED,
        deployment_id=dep.id,
        version=None,
        slot=None,
        detail={"log": "L" * 10_000 + "END", **detail},
    )
    assert ev.detail["log"].endswith("END")
    assert len(ev.detail["log"]) == MAX_DETAIL_CHARS
    assert len(ev.detail) == 32
    assert [e.id for e in store.events(b)] == [ev.id]
    assert store.get_deployment(dep.id).counts == {"pending": 1}
    with pytest.raises(NotFoundError):
        report(store, "ghost", UpdateEvent.DOWNLOADING, dep.id)


def test_report_ids_make_retries_idempotent(store: Store) -> None:
    (dev,) = add_devices(store, 1)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"all": True}, created_by="t"
    )
    first = report(store, dev, UpdateEvent.COMMITTED, dep.id, report_id="r-1")
    again = report(store, dev, UpdateEvent.COMMITTED, dep.id, report_id="r-1")
    assert first == again
    report(store, dev, UpdateEvent.ROLLED_BACK, dep.id, report_id="r-2")
    # A retried old report does not undo what later ones did.
    report(store, dev, UpdateEvent.COMMITTED, dep.id, report_id="r-1")
    assert [(e.event, e.report_id) for e in store.events(dev)] == [
        ("committed", "r-1"),
        ("rolled_back", "r-2"),
    ]
    assert store.get_deployment(dep.id).counts == {"failed": 1}
    # The same id from another device is another report.
    (other,) = add_devices(store, 1, prefix="o")
    report(store, other, UpdateEvent.DOWNLOADING, None, report_id="r-1")
    assert len(store.events(other)) == 1


def test_cancel(store: Store) -> None:
    a, b, c = add_devices(store, 3)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"all": True}, created_by="t"
    )
    report(store, a, UpdateEvent.COMMITTED, dep.id)
    report(store, b, UpdateEvent.DOWNLOADING, dep.id)
    got = store.cancel_deployment(dep.id)
    assert (got.state, got.counts) == ("cancelled", {"succeeded": 1, "cancelled": 2})
    assert check_in(store, b) is None
    assert check_in(store, c) is None
    # Reports arriving after the cancel are kept but change nothing.
    report(store, b, UpdateEvent.COMMITTED, dep.id)
    assert store.get_deployment(dep.id).counts == {"succeeded": 1, "cancelled": 2}
    assert store.get_deployment(dep.id).state == "cancelled"
    assert [e.event for e in store.events(b)] == ["downloading", "committed"]
    with pytest.raises(ConflictError):
        store.cancel_deployment(dep.id)
    with pytest.raises(NotFoundError):
        store.cancel_deployment(999)
    with pytest.raises(NotFoundError):
        store.get_deployment(999)


def test_newest_active_deployment_is_offered(store: Store) -> None:
    (dev,) = add_devices(store, 1)
    r2 = add_release(store, "2.0.0")
    r3 = add_release(store, "3.0.0")
    d2 = store.create_deployment(
        name="a", target_name=r2.target_name, selector={"all": True}, created_by="t"
    )
    d3 = store.create_deployment(
        name="b", target_name=r3.target_name, selector={"all": True}, created_by="t"
    )
    offer = check_in(store, dev)
    assert isinstance(offer, Offer)
    assert (offer.deployment_id, offer.target_name) == (d3.id, r3.target_name)
    store.cancel_deployment(d3.id)
    offer = check_in(store, dev)
    assert isinstance(offer, Offer)
    assert (offer.deployment_id, offer.counter) == (d2.id, 2)


def test_deployment_pages_filters_and_single_target(store: Store) -> None:
    ids = add_devices(store, 5)
    rel = add_release(store, "2.0.0")
    first = store.create_deployment(
        name="a", target_name=rel.target_name, selector={"devices": ids}, created_by="t"
    )
    second = store.create_deployment(
        name="b", target_name=rel.target_name, selector={"devices": ids[:2]}, created_by="t"
    )
    store.cancel_deployment(second.id)
    assert [d.id for d in store.list_deployments()] == [first.id, second.id]
    assert [d.id for d in store.list_deployments(limit=1, offset=1)] == [second.id]
    assert [d.id for d in store.list_deployments(state="cancelled")] == [second.id]
    assert store.count_deployments() == 2
    assert store.count_deployments(state="active") == 1
    assert store.count_deployments(state="completed") == 0

    report(store, ids[3], UpdateEvent.DOWNLOADING, first.id)
    page = store.deployment_targets(first.id, limit=2, offset=2)
    assert [t["device_id"] for t in page] == ids[2:4]
    running = store.deployment_targets(first.id, status="in_progress")
    assert [t["device_id"] for t in running] == [ids[3]]
    assert store.count_deployment_targets(first.id) == 5
    assert store.count_deployment_targets(first.id, status="pending") == 4
    one = store.deployment_target(first.id, ids[3])
    assert one is not None
    assert one["status"] == "in_progress"
    assert store.deployment_target(second.id, ids[4]) is None  # not part of it
    assert store.deployment_target(999, ids[0]) is None
