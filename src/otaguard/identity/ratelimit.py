"""A sliding-window limit on failures per client address (pure: the caller passes the time).

Lock-out protects one account; this stops one address from trying many accounts. In memory,
per server process: several processes each allow the limit (documented in SECURITY.md).
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass
class FailureWindow:
    limit: int = 100
    window_seconds: float = 60.0
    max_clients: int = 10_000
    _hits: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _trim(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_seconds:
            hits.popleft()
        return hits

    def blocked(self, key: str, now: float) -> bool:
        with self._lock:
            return len(self._trim(key, now)) >= self.limit

    def failure(self, key: str, now: float) -> None:
        with self._lock:
            if key not in self._hits and len(self._hits) >= self.max_clients:
                # bounded memory: forget the quietest client
                oldest = min(self._hits, key=lambda k: self._hits[k][-1] if self._hits[k] else 0)
                del self._hits[oldest]
            self._trim(key, now).append(now)
