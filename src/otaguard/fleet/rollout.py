"""The phased rollout's decision, as a pure function: counts and the time in, a verdict out.

The server keeps a ``RolloutProgress`` per deployment and the per-phase counts of device
outcomes (``fleet/progress.py``); on every evaluation it calls ``decide`` and carries out the
``Decision``: ``advance`` (enter the next phase: ``progress.advanced``), ``wait`` (with the
reason and when to look again), ``pause`` (stop offering the update to new devices:
``progress.paused``), ``abort`` (also tell devices that have not installed to skip it:
``progress.aborted``) or ``complete`` (``progress.completed``, with how it ended). ``decide``
never skips a gate; an operator may, through the transitions.

Order of the checks in ``decide``: an abort-level failure rate (even while paused: devices that
were already installing keep reporting), then the pause limits (failure, rollback, silence after
install; ``fleet/stats.rate_alarm``), then the phase's gates (soak time, minimum sample,
success share, health gate, approval, manual advance). Rates are tested on two scopes: every
device released so far and the current phase's own devices (a bad phase is not hidden by good
earlier ones), each at ``alpha / 2``. When an operator resumes a paused rollout, the outcomes
seen so far are *acknowledged*: the rate tests then judge only outcomes that came after.

Each rate test is an SPRT of "the true rate is ``tolerated``" against "it is ``limit``": for a
pause limit ``L`` the tolerated rate is ``L / 2``, for the plan's abort limit ``A`` it is
``max(pause limit, A / 2)``. Between the two lies the test's indifference zone (with ``L`` =
2 % a rollout is eventually paused once the true rate is above ~1.44 %, the rate at which the
test's drift changes sign; with ``A`` = 20 % it is aborted above ~14.5 %).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from otaguard.errors import RolloutStateError
from otaguard.fleet.health import GateVerdict, HealthGate
from otaguard.fleet.phases import AdvanceMode, RolloutPlan, SuccessCriteria
from otaguard.fleet.progress import (
    ENDED,
    Outcome,
    PhaseCounts,
    RolloutProgress,
    RolloutStatus,
    outcome_of,
)
from otaguard.fleet.stats import RateTest, rate_alarm


class Action(StrEnum):
    ADVANCE = "advance"
    WAIT = "wait"
    PAUSE = "pause"
    ABORT = "abort"
    COMPLETE = "complete"


class Reason(StrEnum):
    CRITERIA_MET = "criteria_met"
    SOAKING = "soaking"
    MIN_SAMPLE = "min_sample"
    SUCCESS_SHARE = "success_share"
    HEALTH_DATA = "health_data"
    HEALTH_GATE = "health_gate"
    AWAITING_APPROVAL = "awaiting_approval"
    AWAITING_OPERATOR = "awaiting_operator"
    IN_FLIGHT = "in_flight"
    PAUSED = "paused"
    FAILURE_RATE = "failure_rate"
    ROLLBACK_RATE = "rollback_rate"
    SILENT_RATE = "silent_rate"
    FINISHED = "finished"
    ENDED = "ended"  # aborted or cancelled earlier


@dataclass(frozen=True)
class Decision:
    """What to do, why (``reason`` a stable code, ``message`` for people) and the figures
    behind it (``evidence``: plain JSON-able values, to store in the audit log and alerts)."""

    action: Action
    reason: Reason
    message: str
    evidence: Mapping[str, object]
    outcome: Outcome | None = None
    next_check: datetime | None = None  # when evaluating again can change the answer


def decide(
    plan: RolloutPlan,
    progress: RolloutProgress,
    counts: Sequence[PhaseCounts],
    now: datetime,
    health: HealthGate | None = None,
) -> Decision:
    """What the rollout should do now. ``counts[i]``: devices first released in phase ``i``
    (missing entries count as empty); ``health``: the gate's verdict for the devices released
    so far against the control cohort, when the phase's criteria ask for it. Times are aware.

    Raises:
        RolloutStateError: ``progress`` names a phase the plan does not have.
    """
    if not 0 <= progress.phase < len(plan.phases):
        raise RolloutStateError(f"phase {progress.phase} is not in the plan")
    phases = [counts[i] if i < len(counts) else PhaseCounts() for i in range(progress.phase + 1)]
    released = sum(phases, PhaseCounts())
    if progress.status in ENDED:
        return _ended(progress, released)
    criteria = plan.phases[progress.phase].criteria
    alarm = _rate_alarms(plan, progress, phases, criteria)
    if alarm is not None and (
        alarm.action is Action.ABORT or progress.status is RolloutStatus.RUNNING
    ):
        return alarm
    if progress.status is RolloutStatus.PAUSED:
        message = f"paused: {progress.note}" if progress.note else "paused by an operator"
        return Decision(Action.WAIT, Reason.PAUSED, message, {"counts": released.as_dict()})
    gate = _phase_gate(plan, progress, released, now, health)
    if gate is not None:
        return gate
    if progress.phase == len(plan.phases) - 1:
        outcome = outcome_of(released)
        message = (
            f"every phase done: {outcome.value} ({released.succeeded}/{released.total} succeeded)"
        )
        return Decision(
            Action.COMPLETE, Reason.FINISHED, message, {"counts": released.as_dict()}, outcome
        )
    return _advance_gate(plan, progress, released)


def _ended(progress: RolloutProgress, released: PhaseCounts) -> Decision:
    evidence = {"counts": released.as_dict()}
    if progress.status is RolloutStatus.ABORTED:
        return Decision(
            Action.COMPLETE, Reason.ENDED, f"aborted: {progress.note}", evidence, Outcome.ABORTED
        )
    if progress.status is RolloutStatus.CANCELLED:
        return Decision(
            Action.COMPLETE,
            Reason.ENDED,
            f"cancelled: {progress.note}",
            evidence,
            Outcome.CANCELLED,
        )
    outcome = outcome_of(released)
    return Decision(
        Action.COMPLETE, Reason.FINISHED, f"completed: {outcome.value}", evidence, outcome
    )


_RATES = (
    ("failure", Reason.FAILURE_RATE, "max_failure_share"),
    ("rollback", Reason.ROLLBACK_RATE, "max_rollback_share"),
    ("silent", Reason.SILENT_RATE, "max_silent_share"),
)


def _bad_events(counts: PhaseCounts, kind: str) -> int:
    if kind == "failure":
        return counts.failed + counts.rolled_back
    return counts.rolled_back if kind == "rollback" else counts.silent


def _scopes(
    progress: RolloutProgress, phases: Sequence[PhaseCounts]
) -> list[tuple[str, PhaseCounts]]:
    """(name, counts since acknowledgement) for every released device and the current phase."""
    ack = progress.acknowledged
    judged = [c.since(ack[i]) if i < len(ack) else c for i, c in enumerate(phases)]
    scopes = [("released", sum(judged, PhaseCounts()))]
    if len(judged) > 1:
        scopes.append((f"phase {progress.phase}", judged[-1]))
    return scopes


def _rate_alarms(
    plan: RolloutPlan,
    progress: RolloutProgress,
    phases: Sequence[PhaseCounts],
    criteria: SuccessCriteria,
) -> Decision | None:
    scopes = _scopes(progress, phases)
    alpha = criteria.alpha / len(scopes)
    abort_limit = plan.abort_failure_share
    for scope, judged in scopes:
        min_sample = max(1, min(criteria.min_sample, judged.total))
        if abort_limit is not None:
            test = rate_alarm(
                _bad_events(judged, "failure"),
                judged.outcomes,
                limit=abort_limit,
                tolerated=max(criteria.max_failure_share, abort_limit / 2),
                alpha=alpha,
                min_sample=min_sample,
            )
            if test.alarm:
                return _alarm(Action.ABORT, Reason.FAILURE_RATE, "failure", scope, test)
    for scope, judged in scopes:
        min_sample = max(1, min(criteria.min_sample, judged.total))
        for kind, reason, limit_name in _RATES:
            test = rate_alarm(
                _bad_events(judged, kind),
                judged.outcomes,
                limit=getattr(criteria, limit_name),
                alpha=alpha,
                min_sample=min_sample,
            )
            if test.alarm:
                return _alarm(Action.PAUSE, reason, kind, scope, test)
    return None


def _alarm(action: Action, reason: Reason, kind: str, scope: str, test: RateTest) -> Decision:
    message = (
        f"{kind} rate {test.observed:.1%} ({test.events}/{test.trials}, {scope}) exceeds "
        f"{test.limit:.1%}: the sequential test crossed its boundary "
        f"(LLR {test.log_likelihood_ratio:.2f} >= {test.boundary:.2f}); "
        f"true rate at least {test.lower:.1%} at this confidence"
    )
    return Decision(action, reason, message, {"scope": scope, "rate": kind, **test.evidence()})


def _phase_gate(
    plan: RolloutPlan,
    progress: RolloutProgress,
    released: PhaseCounts,
    now: datetime,
    health: HealthGate | None,
) -> Decision | None:
    phase = plan.phases[progress.phase]
    evidence: dict[str, object] = {"phase": phase.name, "counts": released.as_dict()}
    soak_end = progress.phase_started_at + timedelta(seconds=phase.soak_seconds)
    if now < soak_end:
        message = f"phase {phase.name!r} soaking until {soak_end.isoformat()}"
        return Decision(Action.WAIT, Reason.SOAKING, message, evidence, next_check=soak_end)
    if progress.phase == len(plan.phases) - 1:
        if released.in_flight:
            message = f"{released.in_flight} devices still updating"
            return Decision(Action.WAIT, Reason.IN_FLIGHT, message, evidence)
        return None
    needed = min(phase.criteria.min_sample, released.total)
    if released.outcomes < needed:
        message = f"{released.outcomes} outcomes so far, {needed} needed before judging the phase"
        return Decision(Action.WAIT, Reason.MIN_SAMPLE, message, evidence)
    share = released.succeeded / released.total if released.total else 1.0
    if share < phase.criteria.min_success_share:
        message = f"{share:.1%} of released devices succeeded, {phase.criteria.min_success_share:.1%} needed"
        return Decision(
            Action.WAIT, Reason.SUCCESS_SHARE, message, {**evidence, "success_share": share}
        )
    if phase.criteria.health_gate:
        return _health_gate(health, evidence)
    return None


def _health_gate(health: HealthGate | None, evidence: dict[str, object]) -> Decision | None:
    if health is None or health.verdict is GateVerdict.INSUFFICIENT:
        skipped = {} if health is None else health.skipped
        message = "not enough health reports from updated and control devices to compare"
        return Decision(Action.WAIT, Reason.HEALTH_DATA, message, {**evidence, "skipped": skipped})
    if health.verdict is GateVerdict.HOLD:
        message = "held at the health gate: " + "; ".join(f.message for f in health.findings)
        return Decision(
            Action.WAIT, Reason.HEALTH_GATE, message, {**evidence, "health": health.evidence()}
        )
    return None


def _advance_gate(plan: RolloutPlan, progress: RolloutProgress, released: PhaseCounts) -> Decision:
    nxt = progress.phase + 1
    evidence = {
        "phase": plan.phases[progress.phase].name,
        "next": plan.phases[nxt].name,
        "counts": released.as_dict(),
    }
    if plan.needs_approval(nxt) and progress.approved_phase != nxt:
        message = f"criteria met; entering {plan.phases[nxt].name!r} needs approval"
        return Decision(Action.WAIT, Reason.AWAITING_APPROVAL, message, evidence)
    if plan.phases[progress.phase].advance is AdvanceMode.MANUAL and not progress.advance_requested:
        message = f"criteria met; waiting for an operator to advance to {plan.phases[nxt].name!r}"
        return Decision(Action.WAIT, Reason.AWAITING_OPERATOR, message, evidence)
    message = f"criteria met; advancing to {plan.phases[nxt].name!r}"
    return Decision(Action.ADVANCE, Reason.CRITERIA_MET, message, evidence)
