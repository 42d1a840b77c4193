"""What the server stores about a phased rollout, and the transitions that change it.

``RolloutProgress`` is the rollout's state between evaluations (phase, when it began, paused or
running, operator requests and acknowledgements); ``PhaseCounts`` is where one phase's devices
stand. Every change is a pure function returning a new value: the ones ``decide``
(``fleet/rollout.py``) calls for (``advanced``, ``paused``, ``completed``) and the operator's
(``request_advance``, ``approve``, ``resumed``, ``aborted``, ``cancelled``). Each refuses a state
it does not fit with ``RolloutStateError``, so a late or repeated request cannot, say, resume an
aborted rollout. An operator who wants to skip the gates calls ``advanced`` directly (the server
audits it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from enum import StrEnum

from otaguard.errors import RolloutStateError
from otaguard.fleet.phases import RolloutPlan


class RolloutStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    ABORTED = "aborted"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


ENDED = frozenset({RolloutStatus.ABORTED, RolloutStatus.CANCELLED, RolloutStatus.COMPLETED})


class Outcome(StrEnum):
    """How a rollout ended: a deployment whose devices all failed is not a success."""

    ALL_SUCCEEDED = "all_succeeded"
    PARTLY_FAILED = "partly_failed"
    ALL_FAILED = "all_failed"
    ABORTED = "aborted"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class PhaseCounts:
    """Devices of one phase by where they stand. ``silent``: installed, then stopped reporting
    for longer than the server allows (the server decides when a device counts as silent)."""

    pending: int = 0
    downloading: int = 0
    installing: int = 0
    succeeded: int = 0
    failed: int = 0
    rolled_back: int = 0
    silent: int = 0

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    @property
    def in_flight(self) -> int:
        return self.pending + self.downloading + self.installing

    @property
    def outcomes(self) -> int:
        """Devices whose update reached an end (or went silent after installing)."""
        return self.succeeded + self.failed + self.rolled_back + self.silent

    def __add__(self, other: PhaseCounts) -> PhaseCounts:
        return PhaseCounts(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def since(self, earlier: PhaseCounts) -> PhaseCounts:
        """Outcomes that came after ``earlier`` (in-flight counts are kept as they are now)."""
        kept = ("pending", "downloading", "installing")
        return PhaseCounts(
            *(
                getattr(self, f.name)
                if f.name in kept
                else max(0, getattr(self, f.name) - getattr(earlier, f.name))
                for f in fields(self)
            )
        )

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RolloutProgress:
    """What the server stores about a rollout between evaluations."""

    phase: int
    phase_started_at: datetime
    status: RolloutStatus = RolloutStatus.RUNNING
    advance_requested: bool = False
    approved_phase: int | None = None  # the phase an approval lets the rollout enter
    acknowledged: tuple[PhaseCounts, ...] = ()  # per-phase counts an operator accepted
    note: str = ""  # why it is paused, aborted or cancelled


def start(now: datetime) -> RolloutProgress:
    return RolloutProgress(phase=0, phase_started_at=now)


def outcome_of(counts: PhaseCounts) -> Outcome:
    """How a finished rollout ended, from its devices' counts (none updated: ``all_failed``)."""
    if counts.total and counts.succeeded == counts.total:
        return Outcome.ALL_SUCCEEDED
    if counts.succeeded == 0:
        return Outcome.ALL_FAILED
    return Outcome.PARTLY_FAILED


def _require(progress: RolloutProgress, *allowed: RolloutStatus, action: str) -> None:
    if progress.status not in allowed:
        raise RolloutStateError(f"cannot {action} a rollout that is {progress.status.value}")


def advanced(plan: RolloutPlan, progress: RolloutProgress, now: datetime) -> RolloutProgress:
    """Enter the next phase (after ``decide`` said advance, or an operator forced it)."""
    _require(progress, RolloutStatus.RUNNING, action="advance")
    if progress.phase >= len(plan.phases) - 1:
        raise RolloutStateError("the rollout is already in its last phase")
    return replace(
        progress, phase=progress.phase + 1, phase_started_at=now, advance_requested=False
    )


def request_advance(progress: RolloutProgress) -> RolloutProgress:
    """An operator says "advance" for a phase in manual mode (criteria must still hold)."""
    _require(progress, RolloutStatus.RUNNING, action="advance")
    return replace(progress, advance_requested=True)


def approve(plan: RolloutPlan, progress: RolloutProgress, phase: int) -> RolloutProgress:
    """Record the (two-person) approval to enter ``phase``; only the next phase can be approved."""
    _require(progress, RolloutStatus.RUNNING, RolloutStatus.PAUSED, action="approve")
    if phase != progress.phase + 1 or phase >= len(plan.phases):
        raise RolloutStateError(f"only the next phase ({progress.phase + 1}) can be approved")
    return replace(progress, approved_phase=phase)


def paused(progress: RolloutProgress, note: str) -> RolloutProgress:
    _require(progress, RolloutStatus.RUNNING, action="pause")
    return replace(progress, status=RolloutStatus.PAUSED, note=note)


def resumed(progress: RolloutProgress, counts: Sequence[PhaseCounts]) -> RolloutProgress:
    """Resume; the outcomes in ``counts`` (now) are acknowledged and no longer judged."""
    _require(progress, RolloutStatus.PAUSED, action="resume")
    return replace(progress, status=RolloutStatus.RUNNING, note="", acknowledged=tuple(counts))


def aborted(progress: RolloutProgress, note: str) -> RolloutProgress:
    _require(progress, RolloutStatus.RUNNING, RolloutStatus.PAUSED, action="abort")
    return replace(progress, status=RolloutStatus.ABORTED, note=note)


def cancelled(progress: RolloutProgress, note: str) -> RolloutProgress:
    _require(progress, RolloutStatus.RUNNING, RolloutStatus.PAUSED, action="cancel")
    return replace(progress, status=RolloutStatus.CANCELLED, note=note)


def completed(progress: RolloutProgress) -> RolloutProgress:
    _require(progress, RolloutStatus.RUNNING, action="complete")
    return replace(progress, status=RolloutStatus.COMPLETED)
