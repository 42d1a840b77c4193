"""Pacing a rollout: how many devices may start downloading now.

Two limits from the plan (``phases.RolloutLimits``): devices downloading at once (protects the
artifact store and the uplink) and new starts per minute (a token bucket, so a phase that opens
to 50,000 devices does not start them all in the same second, and a burst of ``start_burst`` is
still allowed after a quiet spell). The bucket is an immutable value: the server keeps it with
the deployment and stores the one each decision returns, so several server processes agree as
long as they read and write it in one transaction.

Pure: the current time is a parameter; nothing here reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from otaguard.errors import PolicyError
from otaguard.fleet.phases import RolloutLimits


@dataclass(frozen=True)
class TokenBucket:
    """``tokens`` of at most ``capacity``, refilled at ``rate_per_second`` since ``updated_at``.

    A clock that goes backwards refills nothing (and never drains the bucket).
    """

    capacity: float
    rate_per_second: float
    tokens: float
    updated_at: datetime

    @classmethod
    def full(cls, *, per_minute: float, burst: int | None, now: datetime) -> TokenBucket:
        """A full bucket: ``burst`` tokens (default: one minute's worth, at least 1)."""
        if not (per_minute > 0 and math.isfinite(per_minute)):
            raise PolicyError(f"starts per minute must be a positive number, got {per_minute}")
        capacity = float(burst) if burst is not None else max(1.0, per_minute)
        if capacity < 1:
            raise PolicyError(f"burst must be at least 1, got {burst}")
        return cls(capacity, per_minute / 60.0, capacity, now)

    def refilled(self, now: datetime) -> TokenBucket:
        elapsed = (now - self.updated_at).total_seconds()
        if elapsed <= 0:
            return self
        tokens = min(self.capacity, self.tokens + elapsed * self.rate_per_second)
        return replace(self, tokens=tokens, updated_at=now)

    def available(self, now: datetime) -> int:
        """Whole tokens that could be taken at ``now``."""
        return math.floor(self.refilled(now).tokens + 1e-9)

    def take(self, count: int, now: datetime) -> TokenBucket:
        """The bucket after taking ``count`` tokens at ``now``.

        Raises:
            PolicyError: fewer than ``count`` tokens are available (ask ``available`` first).
        """
        bucket = self.refilled(now)
        if count < 0 or count > bucket.tokens + 1e-9:
            raise PolicyError(f"cannot take {count} tokens, {bucket.tokens:.2f} available")
        return replace(bucket, tokens=max(0.0, bucket.tokens - count))

    def wait_for(self, count: int, now: datetime) -> timedelta:
        """How long until ``count`` (<= capacity) tokens are available."""
        missing = count - self.refilled(now).tokens
        if missing <= 1e-9:
            return timedelta(0)
        return timedelta(seconds=missing / self.rate_per_second)


class Limit(StrEnum):
    """What held starts back."""

    NONE = "none"  # every waiting device may start
    CONCURRENCY = "concurrency"  # too many devices downloading
    RATE = "rate"  # the starts-per-minute bucket is empty


@dataclass(frozen=True)
class Admission:
    """``starts`` devices may start now; store ``bucket`` for the next decision. When a limit
    held some back, ``limit`` says which and ``retry_after`` when to look again (``None`` if
    it depends on downloads finishing)."""

    starts: int
    bucket: TokenBucket | None
    limit: Limit
    retry_after: timedelta | None


def new_bucket(limits: RolloutLimits, now: datetime) -> TokenBucket | None:
    """The bucket a deployment starts with, or ``None`` when starts are not rate-limited."""
    if limits.max_starts_per_minute is None:
        return None
    return TokenBucket.full(
        per_minute=limits.max_starts_per_minute, burst=limits.start_burst, now=now
    )


def admit_starts(
    limits: RolloutLimits,
    *,
    waiting: int,
    downloading: int,
    bucket: TokenBucket | None,
    now: datetime,
) -> Admission:
    """How many of ``waiting`` devices may start now, given ``downloading`` in progress."""
    if waiting < 0 or downloading < 0:
        raise PolicyError("waiting and downloading must not be negative")
    starts, limit, retry = waiting, Limit.NONE, None
    cap = limits.max_concurrent_downloads
    if cap is not None and downloading + starts > cap:
        starts, limit = max(0, cap - downloading), Limit.CONCURRENCY
    if bucket is not None:
        tokens = bucket.available(now)
        if tokens < starts:
            starts, limit = tokens, Limit.RATE
        bucket = bucket.take(starts, now)
        if limit is Limit.RATE:
            retry = bucket.wait_for(1, now)
    return Admission(starts, bucket, limit, retry)
