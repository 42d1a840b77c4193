"""The check-in batcher (server/checkin.py): group commit on the event loop (SQLite) or on a
worker thread (PostgreSQL), each caller getting its own outcome."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from otaguard.errors import StoreBusyError
from otaguard.server.checkin import CheckinBatcher
from otaguard.store.database import CheckinOutcome, CheckinRequest, Offer, Reported

REPORT = Reported("hw", "1.0.0", "a", 0, None)


def request(device_id: str) -> CheckinRequest:
    return CheckinRequest(device_id, lambda _key: REPORT)


class FakeStore:
    """Records the batches it is given; answers each device with an offer naming it."""

    def __init__(self, busy_times: int = 0) -> None:
        self.batches: list[tuple[list[str], bool]] = []
        self.busy_times = busy_times
        self.threads: list[str] = []

    def check_in_many(self, requests: list[CheckinRequest], wait: bool) -> list[CheckinOutcome]:
        self.threads.append(threading.current_thread().name)
        if not wait and self.busy_times > 0:
            self.busy_times -= 1
            raise StoreBusyError("held")
        self.batches.append(([r.device_id for r in requests], wait))
        return [CheckinOutcome(offer=Offer(i, r.device_id, 1)) for i, r in enumerate(requests)]


async def submit_all(batcher: CheckinBatcher, ids: list[str]) -> list[CheckinOutcome]:
    return list(await asyncio.gather(*(batcher.submit(request(d)) for d in ids)))


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "worker"])
def test_concurrent_checkins_share_transactions_and_get_their_own_answers(inline: bool) -> None:
    store = FakeStore()
    sizes: list[int] = []
    batcher = CheckinBatcher(store.check_in_many, inline=inline, on_batch=sizes.append)
    ids = [f"d{i}" for i in range(50)]
    try:
        outcomes = asyncio.run(submit_all(batcher, ids))
    finally:
        batcher.close()
    assert [o.offer.target_name for o in outcomes if o.offer] == ids
    assert sorted(d for batch, _ in store.batches for d in batch) == sorted(ids)
    assert len(store.batches) < len(ids)  # grouped, not one transaction each
    assert sum(sizes) == 50
    assert batcher.checkins == 50
    assert batcher.batches == len(sizes)
    if inline:
        assert len(store.batches) == 1  # all submitted in one loop iteration
        assert store.threads == ["MainThread"]
        assert [wait for _, wait in store.batches] == [False]
    else:
        assert set(store.threads) == {"otaguard-checkin"}
        assert all(wait for _, wait in store.batches)


def test_max_batch_splits_transactions() -> None:
    store = FakeStore()
    batcher = CheckinBatcher(store.check_in_many, inline=True, max_batch=8)
    outcomes = asyncio.run(submit_all(batcher, [f"d{i}" for i in range(20)]))
    assert [len(b) for b, _ in store.batches] == [8, 8, 4]
    assert len(outcomes) == 20


def test_inline_batch_goes_to_the_worker_when_the_database_is_busy() -> None:
    store = FakeStore(busy_times=1)
    batcher = CheckinBatcher(store.check_in_many, inline=True)
    try:
        outcomes = asyncio.run(submit_all(batcher, ["a", "b", "c"]))
    finally:
        batcher.close()
    assert [o.offer.target_name for o in outcomes if o.offer] == ["a", "b", "c"]
    assert batcher.handed_to_worker == 1
    # Refused once on the loop (not waiting), then run by the worker, which waits.
    assert store.threads[0] == "MainThread"
    assert store.threads[1:] == ["otaguard-checkin"]
    assert [wait for _, wait in store.batches] == [True]


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "worker"])
def test_a_failed_transaction_reaches_every_caller(inline: bool) -> None:
    def broken(requests: list[CheckinRequest], wait: bool) -> list[CheckinOutcome]:
        raise RuntimeError("database went away")

    batcher = CheckinBatcher(broken, inline=inline)

    async def run() -> list[Any]:
        return await asyncio.gather(
            *(batcher.submit(request(d)) for d in ("a", "b")), return_exceptions=True
        )

    try:
        results = asyncio.run(run())
    finally:
        batcher.close()
    assert [str(r) for r in results] == ["database went away"] * 2


def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    gate = threading.Event()
    store = FakeStore()

    def slow(requests: list[CheckinRequest], wait: bool) -> list[CheckinOutcome]:
        gate.wait(10)
        return store.check_in_many(requests, wait)

    batcher = CheckinBatcher(slow, inline=False)

    async def run() -> CheckinOutcome:
        gone = asyncio.ensure_future(batcher.submit(request("gone")))
        kept = asyncio.ensure_future(batcher.submit(request("kept")))
        await asyncio.sleep(0.05)
        gone.cancel()
        gate.set()
        return await kept

    try:
        kept = asyncio.run(run())
    finally:
        batcher.close()
    assert kept.offer is not None
    assert kept.offer.target_name == "kept"
