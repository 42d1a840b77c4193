"""The download's retry budget and backoff, and the verdict on a finished stream: pure.

The agent streams a target in one or more requests (``agent/slot_stream.py``). After each
failed request it asks ``RetryBudget.after_failure`` whether to go on: at most
``max_attempts`` consecutive requests without progress (a request that wrote bytes resets the
count) and ``max_requests`` requests in all; a permanent error (4xx, more bytes than signed)
ends the download at once. Between requests it waits ``backoff_cap`` scaled by a uniform draw
(exponential backoff with full jitter). No clock, no randomness, no I/O here: the caller owns
those and passes values in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass
class RetryBudget:
    """The budget of one download (one ``DOWNLOADING`` visit; a restart gets a new one)."""

    max_attempts: int
    max_requests: int
    failures: int = 0  # consecutive failed requests without progress (progress counts as 1)
    requests: int = 0

    def start_request(self) -> None:
        self.requests += 1

    def after_failure(self, *, progressed: bool, permanent: bool) -> bool:
        """Record a failed request; True when the download must stop (budget spent or the
        error is permanent), False when the caller backs off and tries again."""
        self.failures = 1 if progressed else self.failures + 1
        return permanent or self.failures >= self.max_attempts or self.requests >= self.max_requests


def backoff_cap(failures: int, *, base: float, maximum: float) -> float:
    """Upper bound of the wait after ``failures`` (>= 1) failures: ``min(maximum,
    base * 2**(failures-1))``; the wait is drawn uniformly from [0, cap] (full jitter)."""
    return min(maximum, base * 2.0 ** (failures - 1))


class StreamVerdict(StrEnum):
    COMPLETE = "complete"  # every signed byte arrived and the streamed sha256 matches
    CORRUPT = "corrupt"  # every byte arrived but the streamed sha256 differs: stop, no retry
    SHORT = "short"  # the connection ended early: a transient failure, resume


def stream_verdict(
    written: int, length: int, streamed_sha256: str | None, signed: str
) -> StreamVerdict:
    """What a request that ended without an error means for the download (``streamed_sha256``
    is only looked at once every byte arrived; the caller may pass None before)."""
    if written < length:
        return StreamVerdict.SHORT
    return StreamVerdict.COMPLETE if streamed_sha256 == signed else StreamVerdict.CORRUPT
