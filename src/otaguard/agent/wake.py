"""When a verified push wake-up lets the agent check in early: replays refused, early check-ins
rate-limited. Pure: times are passed in (monotonic seconds), nothing is read or written.

Why: a wake-up that verifies (``director/wakeup.py``) still must not let whoever can publish on
the broker, or replay what it saw there, make devices hammer the server. So a device

* accepts each wake-up nonce once (remembered for the wake-ups' validity window, bounded);
* runs at most one early check-in per ``min_interval`` seconds, counted from the last check-in
  of any kind: wake-ups inside that time are not lost but coalesced into one check-in when it
  ends (the server's newest news is still fetched, just not sooner);
* forgets a pending wake-up once a check-in starts after it arrived (that check-in serves it).

So the worst a broker can cause is one check-in per ``min_interval`` per device, on top of
the polls; a device that never gets a wake-up polls as before.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from enum import StrEnum

#: default minimum seconds between two check-ins started by wake-ups
DEFAULT_MIN_INTERVAL = 30.0
MAX_REMEMBERED_NONCES = 256


class Verdict(StrEnum):
    """What became of one verified wake-up."""

    SCHEDULED = "scheduled"  # an early check-in is due (now or when the rate limit allows)
    COALESCED = "coalesced"  # one is already pending: this adds nothing
    REPLAYED = "replayed"  # this nonce was seen before: ignored


@dataclass
class WakeGate:
    """The device's wake-up bookkeeping; one per agent process."""

    min_interval: float = DEFAULT_MIN_INTERVAL
    remember_for: float = 1200.0  # twice the wake-up validity window: replays stay refused
    last_checkin: float | None = None
    pending_since: float | None = None
    _nonces: OrderedDict[str, float] = field(default_factory=OrderedDict)

    def admit(self, nonce: str, now: float) -> Verdict:
        """Account for a verified wake-up with ``nonce`` received at ``now``."""
        self._forget(now)
        if nonce in self._nonces:
            return Verdict.REPLAYED
        self._nonces[nonce] = now
        while len(self._nonces) > MAX_REMEMBERED_NONCES:
            self._nonces.popitem(last=False)
        if self.pending_since is not None:
            return Verdict.COALESCED
        self.pending_since = now
        return Verdict.SCHEDULED

    def due_at(self) -> float | None:
        """When the pending early check-in may run (None: none pending)."""
        if self.pending_since is None:
            return None
        if self.last_checkin is None:
            return self.pending_since
        return max(self.pending_since, self.last_checkin + self.min_interval)

    def checkin_started(self, now: float) -> None:
        """A check-in (polled or woken) starts at ``now``: it serves every wake-up received
        before it."""
        self.last_checkin = now
        if self.pending_since is not None and self.pending_since <= now:
            self.pending_since = None

    def _forget(self, now: float) -> None:
        while self._nonces:
            nonce, seen = next(iter(self._nonces.items()))
            if now - seen < self.remember_for:
                break
            del self._nonces[nonce]
