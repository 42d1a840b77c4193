"""Phased rollout rate and time from an injected fault to the pause (issue 12).

Lightweight mode, in process against the server's own store (no HTTP, no images): N devices
check in through the group-commit path (``Store.check_in_many``, batches of 256, as the
server's batcher sends them), each offered device reports ``committed``, and the rollout
evaluator (``store.rollouts.evaluate``, what the server's monitor task runs) advances the
rollout through a 1 % -> 10 % -> 50 % -> 100 % plan with no soak. Rate = devices updated per
minute from deployment to completion. Baseline, same run, same database: the same fleet
updated by a plain deployment (every device at once), so the ratio is the cost of phasing.

Fault to pause: a phased rollout (soak S seconds) of a release that fails on 30 % of devices,
with the evaluator running every second in a thread as in the server; measured from the first
failure report to the evaluator's pause. Goal: within one soak interval.

    .venv/bin/python bench/rollout_rate.py [--devices 10000] [--soak 10] [--database-url URL]

Goals: >= 5,000 devices/min through all phases; pause within one soak interval.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from otaguard.fleet.plan_codec import plan_from_json
from otaguard.fleet.status import UpdateEvent
from otaguard.store.checkin import CheckinRequest, Reported
from otaguard.store.database import Store

REPO = Path(__file__).resolve().parents[1]
HW = "bench-board"
NEW = "bench-board/fw-2.0.0.img"
BATCH = 256


def world(url: str, devices: int) -> Store:
    store = Store(url)
    store.migrate()
    for name, version in (("bench-board/fw-1.0.0.img", "1.0.0"), (NEW, "2.0.0")):
        store.upsert_release(
            name,
            version=version,
            hardware=[HW],
            security_version=0,
            sha256="0" * 64,
            length=1,
            custom={},
        )
    for i in range(devices):
        store.register_device(f"b{i:06d}", HW, f"credential-{i:06d}-0123456789")
    return store


def check_in_all(store: Store, ids: list[str], version: str) -> dict[str, int]:
    report = Reported(HW, version, "a", 0, "bench")
    offered: dict[str, int] = {}
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        outcomes = store.check_in_many([CheckinRequest(d, lambda _k: report) for d in chunk])
        offered.update(
            {d: o.offer.deployment_id for d, o in zip(chunk, outcomes, strict=True) if o.offer}
        )
    return offered


def plan(soak: int, min_sample: int = 20) -> Any:
    crit = {"min_sample": min_sample}
    shares = (("1%", 0.01), ("10%", 0.1), ("50%", 0.5), ("100%", 1.0))
    return plan_from_json(
        {
            "phases": [
                {"name": n, "share": s, "soak_seconds": soak, "criteria": crit} for n, s in shares
            ]
        }
    )


def update_all(store: Store, ids: list[str], phased: bool, fail: set[str] = frozenset()) -> float:
    """Seconds from deployment to completion."""
    started = time.perf_counter()
    dep = store.create_deployment(
        name="bench",
        target_name=NEW,
        selector={"all": True},
        created_by="bench",
        plan=plan(0) if phased else None,
    ).id
    waiting = set(ids)
    while store.get_deployment(dep).state == "active":
        if phased:
            store.rollouts.evaluate(dep)
        for device in check_in_all(store, sorted(waiting), "1.0.0"):
            event = UpdateEvent.FAILED if device in fail else UpdateEvent.COMMITTED
            store.record_event(
                device, event=event, deployment_id=dep, version="2.0.0", slot="b", detail={}
            )
            waiting.discard(device)
        if phased:
            store.rollouts.evaluate(dep)
    return time.perf_counter() - started


def fault_to_pause(store: Store, ids: list[str], soak: int) -> dict[str, float]:
    dep = store.create_deployment(
        name="bad", target_name=NEW, selector={"all": True}, created_by="bench", plan=plan(soak)
    ).id
    stop = threading.Event()
    paused_at: list[float] = []

    def evaluator() -> None:  # the server's monitor task, every second
        while not stop.wait(1.0):
            result = store.rollouts.evaluate(dep)
            if result is not None and result.decision.action.value == "pause":
                paused_at.append(time.perf_counter())
                return

    thread = threading.Thread(target=evaluator)
    store.rollouts.evaluate(dep)  # admits the first phase
    thread.start()
    rng = random.Random(5)
    first_failure: float | None = None
    try:
        while not paused_at:
            for device in check_in_all(store, ids, "1.0.0"):
                failed = rng.random() < 0.3
                if failed and first_failure is None:
                    first_failure = time.perf_counter()
                store.record_event(
                    device,
                    event=UpdateEvent.FAILED if failed else UpdateEvent.COMMITTED,
                    deployment_id=dep,
                    version="2.0.0",
                    slot="b",
                    detail={},
                )
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert first_failure is not None
    view = store.rollouts.view(dep)
    failed = sum(p["counts"]["failed"] for p in view["phases"])
    return {
        "seconds": paused_at[0] - first_failure,
        "soak": soak,
        "failed": failed,
        "phase": view["phase"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--soak", type=int, default=10)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        for label, phased in (("plain", False), ("phased", True)):
            url = args.database_url or f"sqlite:///{tmp}/{label}.db"
            store = world(url, args.devices)
            ids = [f"b{i:06d}" for i in range(args.devices)]
            check_in_all(store, ids, "1.0.0")
            seconds = update_all(store, ids, phased)
            figures[label] = args.devices / seconds * 60
            print(
                f"{label}: {args.devices} devices in {seconds:.1f} s = "
                f"{figures[label]:,.0f} devices/min"
            )
            store.close()
            if args.database_url:
                break  # one database: the baseline needs its own
        store = world(args.database_url or f"sqlite:///{tmp}/fault.db", 2000)
        ids = [f"b{i:06d}" for i in range(2000)]
        check_in_all(store, ids, "1.0.0")
        fault = fault_to_pause(store, ids, args.soak)
        store.close()
    print(
        f"fault to pause: {fault['seconds']:.1f} s (soak {args.soak} s), "
        f"{fault['failed']:.0f} devices failed, paused in phase {fault['phase']:.0f}"
    )
    if not args.no_write:
        write(args, figures, fault)


def write(args: argparse.Namespace, figures: dict[str, float], fault: dict[str, float]) -> None:
    path = REPO / "docs" / "BENCHMARKS.md"
    text = path.read_text()
    head = "## Phased rollout rate and fault-to-pause (issue 12)"
    if head in text:
        text = text[: text.index(head)].rstrip() + "\n"
    phased, plain = figures.get("phased", 0.0), figures.get("plain", 0.0)
    ratio = f"{phased / plain:.2f}" if plain else "n/a"
    text += f"""
{head}

`.venv/bin/python bench/rollout_rate.py --devices {args.devices} --soak {args.soak}`
({dt.date.today().isoformat()}, SQLite, this machine, shared with other work). Lightweight mode:
devices check in through `Store.check_in_many` (batches of {BATCH}) and report `committed`; the
evaluator advances a 1/10/50/100 % plan with no soak.

| figure | value | goal |
| --- | --- | --- |
| devices updated per minute, phased, all phases | {phased:,.0f} | >= 5,000 |
| same fleet, plain deployment (baseline, same run) | {plain:,.0f} | |
| phased / plain | {ratio} | |
| injected fault (30 % failures) to pause | {fault["seconds"]:.1f} s | <= soak ({fault["soak"]:.0f} s) |
| devices failed before the pause (of 2,000; canary phase 20) | {fault["failed"]:.0f} | |
"""
    path.write_text(text)


if __name__ == "__main__":
    main()
