"""The download's retry budget, backoff and stream verdict (``agent/retry.py``): pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otaguard.agent.retry import RetryBudget, StreamVerdict, backoff_cap, stream_verdict


def run(budget: RetryBudget, progress: list[bool], permanent_at: int | None = None) -> int:
    """Failed requests with the given progress until the budget says stop; the requests made."""
    for i, progressed in enumerate(progress):
        budget.start_request()
        if budget.after_failure(progressed=progressed, permanent=i == permanent_at):
            return budget.requests
    return -1  # never stopped


@pytest.mark.parametrize(
    ("attempts", "requests", "progress", "permanent_at", "stops_after"),
    [
        (6, 100, [False] * 10, None, 6),  # six attempts without progress
        (1, 100, [False] * 3, None, 1),
        (3, 100, [True] * 10, None, -1),  # progress every time: never out of attempts
        (3, 5, [True] * 10, None, 5),  # ...but the request budget ends it
        # a request that made progress counts as the first failure of a new run
        (3, 100, [False, False, True, False, True, False, True], None, -1),
        (3, 100, [False, False, True, False, False, True], None, 5),
        (6, 100, [False] * 10, 0, 1),  # permanent: at once
        (6, 100, [True, True, True], 2, 3),
    ],
)
def test_budget_table(
    attempts: int, requests: int, progress: list[bool], permanent_at: int | None, stops_after: int
) -> None:
    assert run(RetryBudget(attempts, requests), progress, permanent_at) == stops_after


def test_progress_resets_the_failure_count_to_one() -> None:
    b = RetryBudget(10, 100)
    for _ in range(4):
        b.start_request()
        b.after_failure(progressed=False, permanent=False)
    assert b.failures == 4
    b.start_request()
    b.after_failure(progressed=True, permanent=False)
    assert b.failures == 1


@given(
    st.integers(min_value=1, max_value=20),
    st.integers(min_value=1, max_value=50),
    st.lists(st.booleans(), min_size=1, max_size=80),
)
def test_budget_bounds(attempts: int, requests: int, progress: list[bool]) -> None:
    b = RetryBudget(attempts, requests)
    stopped = run(b, progress)
    assert b.requests <= requests
    if stopped == -1:
        assert len(progress) < requests
    else:
        # stopped because the request budget is spent or `attempts` failures ran without progress
        tail = progress[:stopped]
        run_without = len(tail) - max((i for i, p in enumerate(tail) if p), default=-1) - 1
        assert stopped == requests or run_without + any(tail) >= attempts


@pytest.mark.parametrize(
    ("failures", "cap"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (40, 8.0)]
)
def test_backoff_doubles_up_to_the_maximum(failures: int, cap: float) -> None:
    assert backoff_cap(failures, base=1.0, maximum=8.0) == cap


@given(st.integers(min_value=1, max_value=200), st.floats(0.01, 100), st.floats(0.01, 1000))
def test_backoff_is_bounded_and_monotonic(failures: int, base: float, maximum: float) -> None:
    cap = backoff_cap(failures, base=base, maximum=maximum)
    assert 0 < cap <= maximum
    assert backoff_cap(failures + 1, base=base, maximum=maximum) >= cap


@pytest.mark.parametrize(
    ("written", "streamed", "verdict"),
    [
        (0, None, StreamVerdict.SHORT),
        (99, None, StreamVerdict.SHORT),
        (99, "aa", StreamVerdict.SHORT),
        (100, "aa", StreamVerdict.COMPLETE),
        (100, "ab", StreamVerdict.CORRUPT),
        (100, None, StreamVerdict.CORRUPT),
        (101, "aa", StreamVerdict.COMPLETE),
    ],
)
def test_stream_verdict(written: int, streamed: str | None, verdict: StreamVerdict) -> None:
    assert stream_verdict(written, 100, streamed, "aa") is verdict
