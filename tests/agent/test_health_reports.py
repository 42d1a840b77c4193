"""When the agent reports health and what it sends (``agent/health_reports.py``): the
after-update window and its interval, the baseline otherwise, a clock going backwards, restarts
counted in the same trailing window for both cohorts, and bodies within the server's bounds."""

from __future__ import annotations

import math

import pytest

from otaguard.agent.health_reports import (
    MAX_BOOTS_KEPT,
    MAX_METRICS,
    HealthSample,
    ReportKind,
    ReportSchedule,
    ReportState,
    after_boot,
    after_commit,
    after_sent,
    in_window,
    parse_probe_output,
    report_body,
    report_due,
    restarts,
    seconds_until_due,
)

S = ReportSchedule(window=3600.0, interval=300.0, baseline_interval=21600.0)
T0 = 1_000_000.0
AFTER = ReportKind.AFTER_UPDATE
BASE = ReportKind.BASELINE


def committed(at: float = T0, sent: float | None = None) -> ReportState:
    state = after_commit(ReportState(), "2.0.0", at)
    return after_sent(state, sent) if sent is not None else state


@pytest.mark.parametrize(
    ("state", "now", "due"),
    [
        (ReportState(), T0, BASE),  # never reported: a baseline now
        (after_sent(ReportState(), T0), T0 + 21599, None),
        (after_sent(ReportState(), T0), T0 + 21600, BASE),
        (after_sent(ReportState(), T0), T0 - 1, BASE),  # clock went back: report
        (committed(sent=T0 - 10), T0, AFTER),  # first report right after the commit
        (committed(sent=T0 + 1), T0 + 299, None),
        (committed(sent=T0 + 1), T0 + 301, AFTER),
        (committed(sent=T0 + 3000), T0 + 3599, AFTER),
        (committed(sent=T0 + 3400), T0 + 3599, None),
        (committed(sent=T0 + 3300), T0 + 3600, None),  # window over; baseline not yet due
        (committed(sent=T0 + 3300), T0 + 3300 + 21600, BASE),
        (committed(sent=T0 + 500), T0 + 400, AFTER),  # clock back inside the window
        (committed(), T0 - 5, BASE),  # commit "in the future": not in its window
    ],
)
def test_which_report_is_due(state: ReportState, now: float, due: ReportKind | None) -> None:
    assert report_due(S, state, now) is due


def test_windows_and_baselines_can_be_switched_off() -> None:
    no_window = ReportSchedule(0.0, 300.0, 21600.0)
    assert not in_window(no_window, committed(), T0 + 1)
    assert report_due(no_window, committed(sent=T0), T0 + 400) is None
    no_baseline = ReportSchedule(3600.0, 300.0, 0.0)
    assert report_due(no_baseline, ReportState(), T0) is None
    assert report_due(no_baseline, committed(), T0 + 1) is AFTER


def test_a_window_of_reports_sends_one_per_interval() -> None:
    state, sent = committed(), []
    for second in range(0, 7200, 10):
        now = T0 + second
        if report_due(S, state, now) is not None:
            sent.append(second)
            state = after_sent(state, now)
    assert sent == list(range(0, 3600, 300))  # 12 after-update reports, then quiet


def test_restarts_count_boots_in_the_same_trailing_window() -> None:
    state = ReportState()
    for at in (T0 - 7200, T0 - 1800, T0 - 60):
        state = after_boot(state, at)
    assert restarts(S, state, T0) == 2  # the last hour
    # after an update: the boot into the new image (before the commit) is not a restart
    state = after_commit(state, "2.0.0", T0 - 30)
    assert restarts(S, state, T0) == 0
    state = after_boot(state, T0 - 5)  # it crashed and came back
    assert restarts(S, state, T0) == 1
    for i in range(MAX_BOOTS_KEPT + 10):
        state = after_boot(state, T0 + i)
    assert len(state.boots) == MAX_BOOTS_KEPT


def test_state_round_trips_and_garbage_starts_afresh() -> None:
    state = after_boot(committed(sent=T0 + 5), T0 + 1)
    assert ReportState.from_json(state.to_json()) == state
    assert ReportState.from_json("nonsense") == ReportState()
    odd = ReportState.from_json(
        {"committed_at": "x", "last_sent_at": math.inf, "boots": [1, "a", True, None]}
    )
    assert odd.boots == (1,)
    assert odd.committed_at is None
    assert odd.last_sent_at is None


def test_bodies_stay_within_the_servers_bounds() -> None:
    metrics = {f"m{i:02d}": float(i) for i in range(20)}
    metrics |= {"bad name!": 1.0, "nan": math.nan, "huge": 1e13}
    body = report_body(
        HealthSample(boot_seconds=12.3456, restarts=2, check_passed=False, metrics=metrics),
        "2.0.0",
    )
    assert body["version"] == "2.0.0"
    assert (body["boot_seconds"], body["restarts"], body["check_passed"]) == (12.346, 2, False)
    assert len(body["metrics"]) == MAX_METRICS
    assert "bad name!" not in body["metrics"]
    assert "nan" not in body["metrics"]
    assert "huge" not in body["metrics"]
    empty = report_body(HealthSample(boot_seconds=-1.0, restarts=-3), None)
    assert empty == {"version": None, "metrics": {}}


def test_probe_output() -> None:
    sample = parse_probe_output(
        '{"boot_seconds": 21.5, "restarts": 1, "check_passed": true, "queue_depth": 7, "x": "y"}'
    )
    assert sample == HealthSample(21.5, 1, True, {"queue_depth": 7})
    assert parse_probe_output("not json") == HealthSample()
    assert parse_probe_output("[1, 2]") == HealthSample()
    assert parse_probe_output('{"restarts": true, "check_passed": 1}') == HealthSample()


@pytest.mark.parametrize(
    ("schedule", "state", "now", "until"),
    [
        (S, ReportState(), T0, 0.0),  # due now
        (S, after_sent(ReportState(), T0), T0 + 100, 21500.0),  # next baseline
        (S, committed(sent=T0 + 10), T0 + 20, 290.0),  # next after-update report
        (S, committed(sent=T0 + 3400), T0 + 3500, 3400 + 21600 - 3500),  # window ends first
        (ReportSchedule(3600.0, 300.0, 0.0), committed(sent=T0 + 3400), T0 + 3500, None),
        (ReportSchedule(3600.0, 300.0, 0.0), after_sent(ReportState(), T0), T0 + 9999, None),
        (ReportSchedule(0.0, 300.0, 0.0), ReportState(), T0, None),  # reports off
    ],
)
def test_seconds_until_the_next_report(
    schedule: ReportSchedule, state: ReportState, now: float, until: float | None
) -> None:
    assert seconds_until_due(schedule, state, now) == until


def test_the_wake_up_time_is_when_the_report_falls_due() -> None:
    """Sleeping exactly ``seconds_until_due`` lands on a due report, never before one."""
    state = committed(sent=T0)
    now = T0 + 1.0
    for _ in range(30):
        wait = seconds_until_due(S, state, now)
        assert wait is not None
        if wait > 0:
            assert report_due(S, state, now + wait - 0.5) is None
        now += wait
        assert report_due(S, state, now) is not None
        state = after_sent(state, now)
