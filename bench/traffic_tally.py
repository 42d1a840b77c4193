"""What the traffic alerts cost on the request path (issue 12, item 4).

Every refused authentication and every ``/tuf/targets`` response adds one entry to an
in-memory ``WindowTally`` (``fleet/tally.py``); a download also notes who it claims to come
from (``server/downloads.py``: a certificate lookup, or one SHA-256 of the bearer credential).
This measures those per-call costs in one process, single-threaded:

* ``WindowTally.add`` on a hot key (one address failing over and over);
* ``WindowTally.add`` with 50,000 open buckets, every call a new key (a flood from many
  addresses: the tally is full and drops its oldest bucket each time);
* ``note_download`` for a bearer-claimed request (header scan, SHA-256, tally entry);
* the scan's side: ``download_usage`` over 50,000 buckets (off the request path).

Usage: ``.venv/bin/python bench/traffic_tally.py [--calls 200000]``; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

from otaguard.fleet.tally import WindowTally
from otaguard.fleet.traffic import Proof, download_key, download_usage
from otaguard.server.downloads import note_download

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def per_call(fn: Callable[[int], None], calls: int) -> float:
    """Microseconds per call (best of three runs)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(calls):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return best / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    rows: list[tuple[str, str]] = []

    hot = WindowTally()
    rows.append(
        ("tally add, one hot key", f"{per_call(lambda i: hot.add(('a', 'r'), NOW), calls):.2f} µs")
    )

    full = WindowTally(max_keys=50_000)
    for i in range(50_000):
        full.add((f"s{i}", "r"), NOW)
    rows.append(
        (
            "tally add, full (50,000 buckets), new key each call",
            f"{per_call(lambda i: full.add((f'n{i}', 'r'), NOW), calls):.2f} µs",
        )
    )

    ctx: Any = SimpleNamespace(
        device_ca=None, settings=SimpleNamespace(client_cert_header=None), downloads=WindowTally()
    )
    scope = {
        "type": "http",
        "client": ("10.0.0.7", 40000),
        "headers": [
            (b"host", b"server:8443"),
            (b"x-otaguard-device", b"device-00042"),
            (b"authorization", b"Bearer " + b"k" * 43),
            (b"range", b"bytes=0-"),
        ],
    }
    cost = per_call(lambda i: note_download(cast(Any, ctx), scope, "ab" * 32, 65536), calls)
    rows.append(("note_download, bearer claim (header scan, SHA-256, tally)", f"{cost:.2f} µs"))

    tally = WindowTally(max_keys=50_000)
    for i in range(50_000):
        key = download_key(Proof.BEARER, f"d{i}", "x", "10.0.0.1", "t")
        tally.add(key, NOW, 1 << 20)
    buckets = tally.read(NOW - dt.timedelta(hours=1))
    start = time.perf_counter()
    download_usage(buckets, {f"d{i}": "x" for i in range(50_000)}, {})
    rows.append(
        (
            "scan: download_usage over 50,000 buckets",
            f"{(time.perf_counter() - start) * 1e3:.0f} ms",
        )
    )

    print(f"calls per figure: {calls:,}\n")
    print("| figure | value |\n| --- | --- |")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
