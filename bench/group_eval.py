"""Saved dynamic groups: how long evaluating one takes on a large fleet (issue 12, item 8).

A group is evaluated when its members are previewed and when a deployment selects it (once, at
creation). In process against the server's own store: N devices (three hardware types, tags,
versions reported through the check-in path), then, each timed as the median of 5 runs:

- ``narrowed``: ``hardware = X and version < 2.0 and tag has eu`` (SQL narrows by hardware
  and tag, the pure ``fleet.groups.matches`` judges the rest);
- ``full scan``: ``match: any`` over ``version < 1.5`` and ``tag has lab`` (nothing to narrow
  by: every device is loaded and judged);
- ``deployment``: creating a deployment whose selector is the narrowed group (evaluation,
  compatibility and downgrade rules, one target row per member).

    .venv/bin/python bench/group_eval.py [--devices 10000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from otaguard.store.checkin import CheckinRequest, Reported
from otaguard.store.database import Store

HARDWARE = ("board-a", "board-b", "board-c")
NEW = "board-a/fw-2.0.0.img"
BATCH = 256
NARROWED = {
    "conditions": [
        {"attribute": "hardware", "op": "eq", "value": "board-a"},
        {"attribute": "version", "op": "lt", "value": "2.0"},
        {"attribute": "tag", "op": "has", "value": "eu"},
    ]
}
FULL_SCAN = {
    "match": "any",
    "conditions": [
        {"attribute": "version", "op": "lt", "value": "1.5"},
        {"attribute": "tag", "op": "has", "value": "lab"},
    ],
}


def world(url: str, devices: int) -> Store:
    store = Store(url)
    store.migrate()
    store.upsert_release(
        NEW, version="2.0.0", hardware=["board-a"], security_version=0, sha256="0" * 64,
        length=1, custom={},
    )  # fmt: skip
    for i in range(devices):
        tags = [("eu", "us")[i % 2]] + (["lab"] if i % 50 == 0 else [])
        store.register_device(f"g{i:06d}", HARDWARE[i % 3], f"credential-{i:06d}-0123456789", tags)
    ids = [f"g{i:06d}" for i in range(devices)]
    for start in range(0, devices, BATCH):
        batch = ids[start : start + BATCH]
        store.check_in_many(
            [
                CheckinRequest(
                    d,
                    lambda _k, d=d: Reported(
                        HARDWARE[int(d[1:]) % 3], ("1.0", "1.4", "1.9")[int(d[1:]) % 3], "a", 0, "b"
                    ),
                )
                for d in batch
            ]
        )
    return store


def timed(run: Callable[[], object], repeat: int = 5) -> tuple[float, object]:
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        store = world(url, args.devices)
        try:
            store.groups.create("narrowed", NARROWED, description="", by="bench")
            store.groups.create("scan", FULL_SCAN, description="", by="bench")
            narrowed, (_, n1) = timed(lambda: store.groups.members("narrowed", limit=1))  # type: ignore[misc]
            scan, (_, n2) = timed(lambda: store.groups.members("scan", limit=1))  # type: ignore[misc]
            names = iter(range(1_000))

            def deploy() -> int:
                dep = store.create_deployment(
                    name=f"d{next(names)}", target_name=NEW, selector={"group": "narrowed"},
                    created_by="bench",
                )  # fmt: skip
                return dep.total

            deployment, total = timed(deploy)
        finally:
            store.close()
    print(f"devices: {args.devices} ({url.split(':')[0]})")
    print(f"narrowed group: {n1} members, {narrowed * 1000:.0f} ms")
    print(f"full-scan group: {n2} members, {scan * 1000:.0f} ms")
    print(f"deployment from the narrowed group: {total} targets, {deployment * 1000:.0f} ms")


if __name__ == "__main__":
    main()
