"""Rollout pacing: concurrent downloads and a token bucket for starts (fleet/pacing.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otaguard.errors import PolicyError
from otaguard.fleet.pacing import Limit, TokenBucket, admit_starts, new_bucket
from otaguard.fleet.phases import RolloutLimits

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_bucket_refills_at_its_rate_up_to_capacity() -> None:
    b = TokenBucket.full(per_minute=60, burst=10, now=T0)
    assert b.available(T0) == 10
    b = b.take(10, T0)
    assert b.available(T0) == 0
    assert b.available(T0 + timedelta(seconds=3)) == 3
    assert b.available(T0 + timedelta(hours=1)) == 10
    assert b.wait_for(2, T0) == timedelta(seconds=2)
    assert b.wait_for(0, T0) == timedelta(0)


def test_bucket_default_burst_is_one_minute_and_at_least_one() -> None:
    assert TokenBucket.full(per_minute=120, burst=None, now=T0).capacity == 120
    assert TokenBucket.full(per_minute=0.5, burst=None, now=T0).capacity == 1


def test_clock_going_backwards_neither_refills_nor_drains() -> None:
    b = TokenBucket.full(per_minute=60, burst=5, now=T0).take(3, T0)
    earlier = T0 - timedelta(minutes=10)
    assert b.refilled(earlier) == b
    assert b.available(earlier) == 2


def test_bucket_refuses_overdraft_and_bad_parameters() -> None:
    b = TokenBucket.full(per_minute=60, burst=2, now=T0)
    with pytest.raises(PolicyError):
        b.take(3, T0)
    with pytest.raises(PolicyError):
        b.take(-1, T0)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(PolicyError):
            TokenBucket.full(per_minute=bad, burst=None, now=T0)
    with pytest.raises(PolicyError):
        TokenBucket.full(per_minute=10, burst=0, now=T0)


@given(st.lists(st.tuples(st.integers(0, 120), st.integers(0, 30)), max_size=40))
def test_starts_never_exceed_burst_plus_rate_times_elapsed(steps: list[tuple[int, int]]) -> None:
    limits = RolloutLimits(max_starts_per_minute=30, start_burst=5)
    bucket = new_bucket(limits, T0)
    now, started = T0, 0
    for seconds, waiting in steps:
        now += timedelta(seconds=seconds)
        admission = admit_starts(limits, waiting=waiting, downloading=0, bucket=bucket, now=now)
        assert 0 <= admission.starts <= waiting
        started += admission.starts
        bucket = admission.bucket
        elapsed = (now - T0).total_seconds()
        assert started <= 5 + elapsed * 0.5 + 1e-6


def test_concurrency_limit() -> None:
    limits = RolloutLimits(max_concurrent_downloads=10)
    a = admit_starts(limits, waiting=50, downloading=7, bucket=None, now=T0)
    assert (a.starts, a.limit, a.retry_after) == (3, Limit.CONCURRENCY, None)
    a = admit_starts(limits, waiting=50, downloading=12, bucket=None, now=T0)
    assert a.starts == 0
    a = admit_starts(limits, waiting=2, downloading=7, bucket=None, now=T0)
    assert (a.starts, a.limit) == (2, Limit.NONE)


def test_rate_limit_with_retry_after() -> None:
    limits = RolloutLimits(max_concurrent_downloads=100, max_starts_per_minute=6, start_burst=2)
    bucket = new_bucket(limits, T0)
    a = admit_starts(limits, waiting=5, downloading=0, bucket=bucket, now=T0)
    assert (a.starts, a.limit) == (2, Limit.RATE)
    assert a.retry_after == timedelta(seconds=10)
    b = admit_starts(
        limits, waiting=5, downloading=2, bucket=a.bucket, now=T0 + timedelta(seconds=10)
    )
    assert b.starts == 1


def test_unlimited_plan_admits_everyone() -> None:
    limits = RolloutLimits()
    assert new_bucket(limits, T0) is None
    a = admit_starts(limits, waiting=100_000, downloading=5_000, bucket=None, now=T0)
    assert (a.starts, a.limit) == (100_000, Limit.NONE)
    with pytest.raises(PolicyError):
        admit_starts(limits, waiting=-1, downloading=0, bucket=None, now=T0)
