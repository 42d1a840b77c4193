"""Bounded in-memory counts per key and time bucket: what the server keeps of events too many
or too cheap to store one row each (failed authentications per source address, bytes served
per device), for the anomaly scan to read.

Why not the database: a refused request costs an attacker one packet, and a download is
served from the blob store without touching the database; a row per event would make either
the cheapest way to load the server. Here an event is one dictionary update under a lock
(no I/O, nothing on the request's latency but that). Memory is bounded: at most ``max_keys``
buckets are open; past that the oldest bucket is dropped (counted in ``dropped``), and buckets
older than the scan needs are pruned when read. Pure: the caller passes the time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any, NamedTuple

Key = tuple[str, ...]


class Bucket(NamedTuple):
    """Events of one ``key`` whose time fell in one bucket: ``amount`` summed (bytes, or 1 per
    event), ``events`` counted, ``first``/``last`` the times of the first and last."""

    key: Key
    first: datetime
    last: datetime
    amount: int
    events: int


class WindowTally:
    """Counts per key in buckets of ``bucket_seconds``; ``read(since)`` returns the buckets
    whose last event is at or after ``since`` and forgets older ones."""

    def __init__(self, bucket_seconds: float = 10.0, max_keys: int = 50_000) -> None:
        self.bucket_seconds = bucket_seconds
        self.max_keys = max_keys
        self.dropped = 0
        # (key, bucket number) -> [first, last, amount, events], oldest opened first
        self._open: OrderedDict[tuple[Key, int], list[Any]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: Key, at: datetime, amount: int = 1) -> None:
        """Count one event of ``key`` at ``at`` (``amount``: bytes, or 1)."""
        slot = (key, int(at.timestamp() // self.bucket_seconds))
        with self._lock:
            found = self._open.get(slot)
            if found is not None:
                if at < found[0]:
                    found[0] = at
                if at > found[1]:
                    found[1] = at
                found[2] += amount
                found[3] += 1
                return
            if len(self._open) >= self.max_keys:
                self._open.popitem(last=False)  # the first opened: the oldest
                self.dropped += 1
            self._open[slot] = [at, at, amount, 1]

    def read(self, since: datetime) -> list[Bucket]:
        """The buckets with events at or after ``since`` (older ones are forgotten)."""
        with self._lock:
            old = [k for k, b in self._open.items() if b[1] < since]
            for k in old:
                del self._open[k]
            return [Bucket(k[0], *b) for k, b in self._open.items()]
