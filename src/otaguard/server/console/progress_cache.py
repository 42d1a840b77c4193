"""Bounding what live progress costs the server: however many browsers poll a deployment,
its counts are read from the database at most once per ``ttl`` seconds per server process.
Pure apart from the clock, which the caller passes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")

#: seconds a deployment's progress is reused for
PROGRESS_TTL = 1.0
MAX_ENTRIES = 256


class TtlCache(Generic[V]):
    def __init__(self, ttl: float = PROGRESS_TTL, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: OrderedDict[int, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times ``load`` ran (for tests and metrics)

    def forget(self, key: int) -> None:
        """Drop ``key`` (after an action changed it here: the next poll reads it afresh)."""
        with self._lock:
            self._items.pop(key, None)

    def get(self, key: int, now: float, load: Callable[[], V]) -> V:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
        value = load()
        with self._lock:
            self.loads += 1
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value
