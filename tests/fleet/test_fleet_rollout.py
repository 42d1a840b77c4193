"""The phased rollout decision and its transitions (fleet/rollout.py, fleet/progress.py)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from otaguard.errors import RolloutStateError
from otaguard.fleet.health import Finding, GateVerdict, HealthGate
from otaguard.fleet.phases import (
    AdvanceMode,
    Phase,
    RolloutPlan,
    SuccessCriteria,
    standard_plan,
    validate_plan,
)
from otaguard.fleet.progress import (
    Outcome,
    PhaseCounts,
    RolloutProgress,
    RolloutStatus,
    aborted,
    advanced,
    approve,
    cancelled,
    completed,
    outcome_of,
    paused,
    request_advance,
    resumed,
    start,
)
from otaguard.fleet.rollout import Action, Reason, decide

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def two_phase(**criteria: object) -> RolloutPlan:
    c = SuccessCriteria(**criteria)  # type: ignore[arg-type]
    return validate_plan(
        RolloutPlan(
            phases=(
                Phase("canary", share=0.1, soak_seconds=3600, criteria=c),
                Phase("all", share=1.0, soak_seconds=600, criteria=c),
            )
        )
    )


def ok(n: int) -> PhaseCounts:
    return PhaseCounts(succeeded=n)


# --- gates --------------------------------------------------------------------------------


def test_soaking_waits_until_the_soak_ends() -> None:
    d = decide(two_phase(), start(T0), [ok(100)], T0 + timedelta(minutes=30))
    assert (d.action, d.reason) == (Action.WAIT, Reason.SOAKING)
    assert d.next_check == T0 + HOUR


def test_advance_after_soak_when_criteria_hold() -> None:
    d = decide(two_phase(), start(T0), [ok(100)], T0 + HOUR)
    assert (d.action, d.reason) == (Action.ADVANCE, Reason.CRITERIA_MET)
    assert d.evidence["next"] == "all"


def test_minimum_sample_and_success_share() -> None:
    plan = two_phase(min_sample=20, min_success_share=0.9)
    d = decide(plan, start(T0), [PhaseCounts(pending=90, succeeded=10)], T0 + HOUR)
    assert d.reason is Reason.MIN_SAMPLE
    d = decide(plan, start(T0), [PhaseCounts(pending=20, succeeded=80)], T0 + HOUR)
    assert d.reason is Reason.SUCCESS_SHARE
    assert d.evidence["success_share"] == 0.8
    d = decide(plan, start(T0), [PhaseCounts(pending=10, succeeded=90)], T0 + HOUR)
    assert d.action is Action.ADVANCE


def test_small_cohort_needs_only_its_own_size_as_sample() -> None:
    d = decide(two_phase(min_sample=20), start(T0), [ok(5)], T0 + HOUR)
    assert d.action is Action.ADVANCE


def test_manual_advance_needs_an_operator() -> None:
    plan = validate_plan(
        RolloutPlan(
            phases=(
                Phase("c", devices=("d1",), advance=AdvanceMode.MANUAL),
                Phase("all", share=1.0),
            )
        )
    )
    progress = start(T0)
    d = decide(plan, progress, [ok(1)], T0 + HOUR)
    assert d.reason is Reason.AWAITING_OPERATOR
    d = decide(plan, request_advance(progress), [ok(1)], T0 + HOUR)
    assert d.action is Action.ADVANCE
    # an operator's request does not skip the criteria
    d = decide(plan, request_advance(progress), [PhaseCounts(failed=1)], T0 + HOUR)
    assert d.action is not Action.ADVANCE


def test_production_phases_need_approval() -> None:
    plan = standard_plan(production=True)
    progress = start(T0)
    d = decide(plan, progress, [ok(50)], T0 + HOUR)
    assert d.reason is Reason.AWAITING_APPROVAL
    approved = approve(plan, progress, 1)
    assert decide(plan, approved, [ok(50)], T0 + HOUR).action is Action.ADVANCE
    with pytest.raises(RolloutStateError):
        approve(plan, progress, 2)
    nxt = advanced(plan, approved, T0 + HOUR)
    assert (nxt.phase, nxt.phase_started_at, nxt.advance_requested) == (1, T0 + HOUR, False)
    # the approval for phase 1 does not carry over to phase 2
    d = decide(plan, nxt, [ok(50), ok(500)], T0 + 2 * HOUR)
    assert d.reason is Reason.AWAITING_APPROVAL


def _gate(verdict: GateVerdict) -> HealthGate:
    findings: tuple[Finding, ...] = ()
    if verdict is GateVerdict.HOLD:
        findings = (Finding("a", "boot_time", "boot_time on a: slower", {"p_value": 0.0001}),)
    return HealthGate(verdict, findings, 3, 0.0033, {})


def test_health_gate_holds_waits_for_data_and_passes() -> None:
    plan = two_phase(health_gate=True)
    p = start(T0)
    assert decide(plan, p, [ok(100)], T0 + HOUR).reason is Reason.HEALTH_DATA
    assert (
        decide(plan, p, [ok(100)], T0 + HOUR, _gate(GateVerdict.INSUFFICIENT)).reason
        is Reason.HEALTH_DATA
    )
    held = decide(plan, p, [ok(100)], T0 + HOUR, _gate(GateVerdict.HOLD))
    assert (held.action, held.reason) == (Action.WAIT, Reason.HEALTH_GATE)
    assert "boot_time on a" in held.message
    assert held.evidence["health"]["verdict"] == "hold"  # type: ignore[index]
    assert decide(plan, p, [ok(100)], T0 + HOUR, _gate(GateVerdict.PASS)).action is Action.ADVANCE
    # without health_gate in the criteria, a hold does not matter
    assert (
        decide(two_phase(), p, [ok(100)], T0 + HOUR, _gate(GateVerdict.HOLD)).action
        is Action.ADVANCE
    )


# --- alarms -------------------------------------------------------------------------------


def test_one_failure_in_three_does_not_pause() -> None:
    d = decide(standard_plan(), start(T0), [PhaseCounts(pending=997, succeeded=2, failed=1)], T0)
    assert d.action is Action.WAIT


def test_failure_rate_pauses_with_evidence() -> None:
    counts = [PhaseCounts(pending=900, succeeded=85, failed=15)]
    d = decide(standard_plan(), start(T0), counts, T0)
    assert (d.action, d.reason) == (Action.PAUSE, Reason.FAILURE_RATE)
    assert d.evidence["events"] == 15
    assert d.evidence["trials"] == 100
    assert d.evidence["scope"] == "released"
    assert "15.0%" in d.message


def test_rollbacks_and_silence_pause_with_their_own_reason() -> None:
    plan = two_phase(max_failure_share=0.5, max_rollback_share=0.02, max_silent_share=0.05)
    d = decide(plan, start(T0), [PhaseCounts(succeeded=80, rolled_back=20)], T0)
    assert d.reason is Reason.ROLLBACK_RATE
    d = decide(plan, start(T0), [PhaseCounts(succeeded=70, silent=30)], T0)
    assert d.reason is Reason.SILENT_RATE


def test_abort_above_the_abort_limit_even_while_paused() -> None:
    plan = replace(two_phase(), abort_failure_share=0.2)
    counts = [PhaseCounts(succeeded=50, failed=50)]
    d = decide(plan, start(T0), counts, T0)
    assert (d.action, d.reason) == (Action.ABORT, Reason.FAILURE_RATE)
    d = decide(plan, paused(start(T0), "failure rate"), counts, T0)
    assert d.action is Action.ABORT
    # a rate above the pause limit but not the abort limit pauses
    d = decide(plan, start(T0), [PhaseCounts(succeeded=90, failed=10)], T0)
    assert d.action is Action.PAUSE


def test_paused_rollout_waits() -> None:
    d = decide(two_phase(), paused(start(T0), "checking a report"), [ok(100)], T0 + HOUR)
    assert (d.action, d.reason) == (Action.WAIT, Reason.PAUSED)
    assert "checking a report" in d.message


def test_a_bad_phase_is_not_hidden_by_good_earlier_ones() -> None:
    plan = standard_plan()
    progress = replace(start(T0), phase=1)
    counts = [ok(5000), PhaseCounts(succeeded=88, failed=12, pending=400)]
    d = decide(plan, progress, counts, T0)
    assert (d.action, d.evidence["scope"]) == (Action.PAUSE, "phase 1")
    # control: the same failures spread like the earlier phase would not be judged bad
    calm = [ok(5000), PhaseCounts(succeeded=99, failed=1, pending=400)]
    assert decide(plan, progress, calm, T0).action is Action.WAIT


def test_resume_acknowledges_outcomes_so_far() -> None:
    plan = two_phase(min_success_share=0.8)
    bad = [PhaseCounts(succeeded=85, failed=15)]
    progress = paused(start(T0), "failure rate")
    assert (
        decide(plan, replace(progress, status=RolloutStatus.RUNNING), bad, T0).action
        is Action.PAUSE
    )
    again = resumed(progress, bad)
    assert again.status is RolloutStatus.RUNNING
    assert decide(plan, again, bad, T0 + HOUR).action is Action.ADVANCE
    # the success share still counts every device: acknowledging failures is not success
    assert decide(two_phase(), again, bad, T0 + HOUR).reason is Reason.SUCCESS_SHARE
    worse = [PhaseCounts(succeeded=85, failed=40)]
    assert decide(plan, again, worse, T0 + HOUR).action is Action.PAUSE


# --- completion ---------------------------------------------------------------------------


def test_last_phase_waits_for_devices_in_flight_then_completes() -> None:
    plan = two_phase()
    last = replace(start(T0), phase=1)
    counts = [ok(10), PhaseCounts(downloading=5, succeeded=85)]
    assert decide(plan, last, counts, T0 + HOUR).reason is Reason.IN_FLIGHT
    assert decide(plan, last, counts, T0 + timedelta(minutes=5)).reason is Reason.SOAKING
    d = decide(plan, last, [ok(10), ok(90)], T0 + HOUR)
    assert (d.action, d.outcome) == (Action.COMPLETE, Outcome.ALL_SUCCEEDED)
    d = decide(plan, last, [ok(10), PhaseCounts(succeeded=89, failed=1)], T0 + HOUR)
    assert d.outcome is Outcome.PARTLY_FAILED


def test_outcomes() -> None:
    assert outcome_of(ok(3)) is Outcome.ALL_SUCCEEDED
    assert outcome_of(PhaseCounts(failed=2, rolled_back=1)) is Outcome.ALL_FAILED
    assert outcome_of(PhaseCounts(succeeded=1, silent=1)) is Outcome.PARTLY_FAILED
    assert outcome_of(PhaseCounts()) is Outcome.ALL_FAILED


def test_ended_rollouts_say_how_they_ended() -> None:
    plan = two_phase()
    counts = [PhaseCounts(succeeded=3, failed=3)]
    d = decide(plan, aborted(start(T0), "bad release"), counts, T0)
    assert (d.action, d.outcome, d.reason) == (Action.COMPLETE, Outcome.ABORTED, Reason.ENDED)
    assert "bad release" in d.message
    d = decide(plan, cancelled(start(T0), "superseded"), counts, T0)
    assert d.outcome is Outcome.CANCELLED
    d = decide(plan, completed(start(T0)), counts, T0)
    assert d.outcome is Outcome.PARTLY_FAILED


# --- transitions --------------------------------------------------------------------------


def test_transitions_refuse_states_they_do_not_fit() -> None:
    plan = two_phase()
    running = start(T0)
    done = completed(running)
    stopped = aborted(running, "x")
    calls: list[Callable[[], object]] = [
        lambda: resumed(running, []),
        lambda: paused(paused(running, "x"), "y"),
        lambda: advanced(plan, paused(running, "x"), T0),
        lambda: advanced(plan, replace(running, phase=1), T0),
        lambda: request_advance(done),
        lambda: aborted(done, "x"),
        lambda: cancelled(stopped, "x"),
        lambda: resumed(stopped, []),
        lambda: completed(paused(running, "x")),
        lambda: approve(plan, done, 1),
    ]
    for call in calls:
        with pytest.raises(RolloutStateError):
            call()
    assert aborted(paused(running, "x"), "y").status is RolloutStatus.ABORTED


# --- whole rollouts, simulated ------------------------------------------------------------


def _simulate(
    plan: RolloutPlan, devices: int, failure_rate: float, seed: int
) -> tuple[list[tuple[Action, Reason]], RolloutProgress, list[PhaseCounts]]:
    """Ten-minute ticks: each in-flight device finishes with probability 1/2."""
    rng = random.Random(seed)
    sizes, before = [], 0
    for phase in plan.phases:
        size = math.ceil((phase.share or 0.0) * devices)
        sizes.append(size - before)
        before = size
    counts = [PhaseCounts(pending=sizes[0])]
    progress, now = start(T0), T0
    log: list[tuple[Action, Reason]] = []
    for _ in range(500):
        now += timedelta(minutes=10)
        counts = [_tick(c, rng, failure_rate) for c in counts]
        d = decide(plan, progress, counts, now)
        if d.action is Action.WAIT:
            continue
        log.append((d.action, d.reason))
        if d.action is Action.ADVANCE:
            progress = advanced(plan, progress, now)
            counts.append(PhaseCounts(pending=sizes[progress.phase]))
            continue
        break
    return log, progress, counts


def _tick(c: PhaseCounts, rng: random.Random, failure_rate: float) -> PhaseCounts:
    done = sum(rng.random() < 0.5 for _ in range(c.pending))
    failed = sum(rng.random() < failure_rate for _ in range(done))
    return replace(
        c, pending=c.pending - done, succeeded=c.succeeded + done - failed, failed=c.failed + failed
    )


def test_good_release_completes_every_phase_unattended() -> None:
    plan = standard_plan(soak_seconds=1800)
    for seed in range(5):
        log, progress, counts = _simulate(plan, 3000, 0.003, seed)
        assert [a for a, _ in log] == [Action.ADVANCE] * 3 + [Action.COMPLETE], log
        assert progress.phase == 3
        assert sum(c.total for c in counts) == 3000


def test_bad_release_is_paused_in_its_first_phase() -> None:
    plan = standard_plan(soak_seconds=1800)
    for seed in range(5):
        log, progress, counts = _simulate(plan, 10_000, 0.2, seed)
        assert log == [(Action.PAUSE, Reason.FAILURE_RATE)], log
        assert progress.phase == 0
        assert sum(c.failed for c in counts) <= math.ceil(0.01 * 10_000)


def test_five_percent_failures_never_get_past_the_ten_percent_phase() -> None:
    plan = standard_plan(soak_seconds=1800)
    pauses = 0
    for seed in range(8):
        log, progress, _ = _simulate(plan, 10_000, 0.05, seed)
        assert progress.phase <= 1, log
        assert (Action.COMPLETE, Reason.FINISHED) not in log
        pauses += (Action.PAUSE, Reason.FAILURE_RATE) in log
    # the rest wait in phase 0: 5 % failures leave the success share below 95 %
    assert pauses >= 6


def test_progress_outside_the_plan_is_refused() -> None:
    with pytest.raises(RolloutStateError, match="not in the plan"):
        decide(two_phase(), replace(start(T0), phase=2), [], T0)
