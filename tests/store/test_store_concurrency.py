"""Many threads checking in and reporting at once: nothing is lost, counters never repeat."""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from otaguard.fleet.status import UpdateEvent
from otaguard.store.database import Offer, Store

from .helpers import add_devices, add_release, check_in

DEVICES = 6
THREADS = 12
ROUNDS = 15


def test_concurrent_check_ins_and_reports(store: Store) -> None:
    devices = add_devices(store, DEVICES)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"all": True}, created_by="t"
    )
    counters: dict[str, list[int]] = defaultdict(list)
    sent: dict[str, set[str]] = defaultdict(set)
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def worker(w: int) -> None:
        barrier.wait()
        for r in range(ROUNDS):
            device = devices[(w + r) % DEVICES]
            offer = check_in(store, device)
            assert isinstance(offer, Offer)
            report_id = f"w{w}-r{r}"
            store.record_event(
                device,
                event=UpdateEvent.DOWNLOADING,
                deployment_id=dep.id,
                version="1.0.0",
                slot="a",
                detail={"worker": w, "round": r},
                report_id=report_id,
            )
            with lock:
                counters[device].append(offer.counter)
                sent[device].add(report_id)

    with ThreadPoolExecutor(THREADS) as pool:
        for fut in [pool.submit(worker, w) for w in range(THREADS)]:
            fut.result(timeout=120)

    total = THREADS * ROUNDS
    assert sum(map(len, counters.values())) == total
    for device in devices:
        got = counters[device]
        # Every check-in got its own counter: 1..n, no repeats, no gaps.
        assert sorted(got) == list(range(1, len(got) + 1)), device
        events = store.events(device, limit=1000)
        assert {e.report_id for e in events} == sent[device]
        assert len(events) == len(sent[device])
        # The device's own view ends on what it reported.
        assert store.get_device(device).update_state == "downloading"
    assert store.get_deployment(dep.id).counts == {"in_progress": DEVICES}


def test_concurrent_retries_of_one_report_store_it_once(store: Store) -> None:
    (device,) = add_devices(store, 1)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"all": True}, created_by="t"
    )
    barrier = threading.Barrier(8)

    def send(_: int) -> int:
        barrier.wait()
        return store.record_event(
            device,
            event=UpdateEvent.COMMITTED,
            deployment_id=dep.id,
            version="2.0.0",
            slot="b",
            detail={},
            report_id="same",
        ).id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(send, range(8)))
    assert len(set(ids)) == 1
    assert len(store.events(device)) == 1
    got = store.get_deployment(dep.id)
    assert (got.state, got.counts) == ("completed", {"succeeded": 1})


def test_concurrent_reports_complete_the_deployment_once(store: Store) -> None:
    """Every device commits at the same moment: the deployment completes, no count is lost."""
    devices = add_devices(store, 16)
    rel = add_release(store, "2.0.0")
    dep = store.create_deployment(
        name="r", target_name=rel.target_name, selector={"all": True}, created_by="t"
    )
    barrier = threading.Barrier(len(devices))

    def commit(device: str) -> None:
        barrier.wait()
        store.record_event(
            device,
            event=UpdateEvent.COMMITTED,
            deployment_id=dep.id,
            version="2.0.0",
            slot="b",
            detail={},
        )

    with ThreadPoolExecutor(len(devices)) as pool:
        list(pool.map(commit, devices))
    got = store.get_deployment(dep.id)
    assert (got.state, got.counts) == ("completed", {"succeeded": 16})
