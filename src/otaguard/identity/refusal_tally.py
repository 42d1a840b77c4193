"""Aggregation of refused requests for the audit log: one row per (kind, client address) per
window, not one per request (pure: the caller passes the time).

Why: a refusal costs the attacker one packet; if each one wrote an audit row, refusals would
be the cheapest way to fill the database and to hold its write lock (issue 11: 300 wrong
bearer credentials wrote 300 rows). The first refusal of a window is written at once (so
an attack shows in the log immediately); the rest of the window is counted in memory and
written as one summary row with the count when the window is over (noticed at the next
refusal of any client, or when the server stops). Memory is bounded: past ``max_keys`` open
windows, the oldest is closed early.

An attacker with many addresses (a botnet, an IPv6 prefix) would still get one row per address
and window. So each kind has at most ``addresses_per_kind`` windows of their own at once; the
refusals of further addresses go into one window of that kind for "other addresses" (client
``*``), written like the others: its first at once, the rest as one summary with the count.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Tally:
    """A window's refusals of one kind from one client address."""

    kind: str
    client: str
    first: float  # clock value of the first refusal
    last: float
    count: int
    sample: dict[str, Any]  # the facts of the first refusal (target, reason, claimed id)


#: the client of the window that gathers a kind's refusals past ``addresses_per_kind``
OTHER_ADDRESSES = "*"


@dataclass
class RefusalTally:
    window_seconds: float = 60.0
    max_keys: int = 10_000
    addresses_per_kind: int = 64
    _open: dict[tuple[str, str], Tally] = field(default_factory=dict)
    _per_kind: Counter[str] = field(default_factory=Counter)  # open windows of each kind
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refused(
        self, kind: str, client: str, now: float, sample: dict[str, Any]
    ) -> tuple[bool, list[Tally]]:
        """Count one refusal. Returns (write a row for this one now: the first of its window,
        the closed windows to summarise: those with refusals after their first)."""
        with self._lock:
            closed = self._expire(now)
            key = (kind, client)
            if key not in self._open and self._per_kind[kind] >= self.addresses_per_kind:
                key = (kind, OTHER_ADDRESSES)
                client = OTHER_ADDRESSES
            current = self._open.get(key)
            if current is not None:
                self._open[key] = Tally(
                    kind, client, current.first, now, current.count + 1, current.sample
                )
                return False, closed
            if len(self._open) >= self.max_keys:
                oldest = min(self._open, key=lambda k: self._open[k].first)
                closed.append(self._pop(oldest))
            self._open[key] = Tally(kind, client, now, now, 1, sample)
            self._per_kind[kind] += 1
            return True, [t for t in closed if t.count > 1]

    def close_all(self) -> list[Tally]:
        """Every open window with refusals after its first (server shutdown)."""
        with self._lock:
            closed = [t for t in self._open.values() if t.count > 1]
            self._open.clear()
            self._per_kind.clear()
            return closed

    def _pop(self, key: tuple[str, str]) -> Tally:
        self._per_kind[key[0]] -= 1
        return self._open.pop(key)

    def _expire(self, now: float) -> list[Tally]:
        done = [k for k, t in self._open.items() if now - t.first >= self.window_seconds]
        return [t for t in (self._pop(k) for k in done) if t.count > 1]
