"""Phased rollout plans: what a plan may say, and which devices each phase releases to.

A plan releases a deployment in phases (canaries by device id or tag, then e.g. 1 % -> 10 % ->
50 % -> 100 %), each with a soak time and success criteria the rollout machine
(``fleet/rollout.py``) checks before it widens. Phases are cumulative: phase k releases to every
device of phases 0..k, so a device never leaves a rollout once it was offered the update.

Device choice is deterministic and spread: devices are grouped into strata by hardware and
current version, ranked inside each stratum by a hash keyed with the deployment id (so two
deployments pick different first devices, and re-evaluating one picks the same ones), and the
strata take turns by the Huntington-Hill apportionment (E. V. Huntington, "The apportionment of
representatives in Congress", Trans. AMS 30, 1928): every stratum gets its first device before
any gets a second, then each next device goes to the stratum with the highest
``size / sqrt(s * (s + 1))`` for its ``s`` devices taken. The result is one order over the whole
fleet; a phase of share ``f`` takes its first ``ceil(f * N)`` devices. Because a divisor method
hands out places one at a time, shares nest by construction and every stratum is represented as
soon as the phase has at least as many places as there are strata.

Pure: plain values in, an assignment out. The server stores the plan and which phase each
device was released in (``pinned``), so devices added later never displace those.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise

from otaguard.errors import RolloutPlanError


class AdvanceMode(StrEnum):
    AUTO = "auto"  # widen as soon as the phase's criteria hold after its soak time
    MANUAL = "manual"  # criteria must hold and an operator must say "advance"


@dataclass(frozen=True)
class SuccessCriteria:
    """When a phase counts as good. Shares are of the devices released so far.

    ``min_success_share``: devices that committed, over all released, before widening.
    ``max_failure_share``/``max_rollback_share``/``max_silent_share``: rates (of devices with an
    outcome) that pause the rollout once the sequential test (``fleet/stats.rate_alarm``, false
    alarm chance ``alpha``) says the true rate exceeds them. ``min_sample``: outcomes needed
    before any of these rates is judged. ``health_gate``: also require the health comparison
    with the control cohort (``fleet/health.py``) to pass before widening.
    """

    min_success_share: float = 0.95
    max_failure_share: float = 0.02
    max_rollback_share: float = 0.02
    max_silent_share: float = 0.05
    min_sample: int = 20
    alpha: float = 0.01
    health_gate: bool = False


@dataclass(frozen=True)
class Phase:
    """One step. It releases to ``devices`` and devices with any of ``tags`` (canaries), and
    to a ``share`` (0 < share <= 1, cumulative) of all the deployment's devices."""

    name: str
    share: float | None = None
    devices: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    soak_seconds: int = 3600
    criteria: SuccessCriteria = field(default_factory=SuccessCriteria)
    advance: AdvanceMode = AdvanceMode.AUTO
    requires_approval: bool = False  # entering this phase needs the two-person approval


@dataclass(frozen=True)
class RolloutLimits:
    """Pacing: devices downloading at once, and new starts per minute (burst ``start_burst``).
    ``None`` means unlimited."""

    max_concurrent_downloads: int | None = None
    max_starts_per_minute: float | None = None
    start_burst: int | None = None


@dataclass(frozen=True)
class RolloutPlan:
    """``production``: every phase after the first needs approval to enter (the first is the
    deployment's own approval). ``abort_failure_share``: a failure rate that aborts rather than
    pauses (tested like the pause limits; must be above every phase's ``max_failure_share``)."""

    phases: tuple[Phase, ...]
    limits: RolloutLimits = field(default_factory=RolloutLimits)
    production: bool = False
    abort_failure_share: float | None = None

    def needs_approval(self, index: int) -> bool:
        """Must an approver agree before phase ``index`` is entered?"""
        return self.phases[index].requires_approval or (self.production and index > 0)


def standard_plan(*, soak_seconds: int = 3600, production: bool = False) -> RolloutPlan:
    """The usual 1 % -> 10 % -> 50 % -> 100 % plan with default criteria."""
    shares = ((0.01, "1%"), (0.10, "10%"), (0.50, "50%"), (1.0, "100%"))
    phases = tuple(Phase(name, share=s, soak_seconds=soak_seconds) for s, name in shares)
    return validate_plan(RolloutPlan(phases=phases, production=production))


def validate_plan(plan: RolloutPlan) -> RolloutPlan:
    """Return ``plan`` if it is sound.

    Raises:
        RolloutPlanError: every problem found, listed in ``problems``.
    """
    problems = [*_plan_problems(plan), *_limit_problems(plan.limits)]
    for phase in plan.phases:
        problems += [f"phase {phase.name!r}: {p}" for p in _phase_problems(phase)]
    if problems:
        raise RolloutPlanError(
            "invalid rollout plan: " + "; ".join(problems), problems=tuple(problems)
        )
    return plan


def _plan_problems(plan: RolloutPlan) -> list[str]:
    if not plan.phases:
        return ["a plan needs at least one phase"]
    problems = []
    names = [p.name for p in plan.phases]
    if len(set(names)) != len(names):
        problems.append("phase names must be unique")
    shares = [p.share for p in plan.phases if p.share is not None]
    if any(b <= a for a, b in pairwise(shares)):
        problems.append("phase shares must increase from phase to phase")
    if plan.phases[-1].share != 1.0:
        problems.append("the last phase must have share 1.0 (every device)")
    abort = plan.abort_failure_share
    if abort is not None:
        highest = max(p.criteria.max_failure_share for p in plan.phases)
        if not highest < abort < 1.0:
            problems.append(
                f"abort_failure_share must be in ({highest}, 1): above every pause limit"
            )
    return problems


def _phase_problems(phase: Phase) -> list[str]:
    problems = []
    if not phase.name.strip():
        problems.append("a phase needs a name")
    if phase.share is None and not phase.devices and not phase.tags:
        problems.append("a phase needs a share, devices or tags")
    if phase.share is not None and not 0.0 < phase.share <= 1.0:
        problems.append(f"share must be in (0, 1], got {phase.share}")
    if phase.soak_seconds < 0:
        problems.append(f"soak_seconds must not be negative, got {phase.soak_seconds}")
    c = phase.criteria
    if not 0.0 <= c.min_success_share <= 1.0:
        problems.append(f"min_success_share must be in [0, 1], got {c.min_success_share}")
    for label in ("max_failure_share", "max_rollback_share", "max_silent_share"):
        value = getattr(c, label)
        if not 0.0 < value < 1.0:
            problems.append(f"{label} must be in (0, 1), got {value}")
    if c.min_sample < 1:
        problems.append(f"min_sample must be at least 1, got {c.min_sample}")
    if not 0.0 < c.alpha < 0.5:
        problems.append(f"alpha must be in (0, 0.5), got {c.alpha}")
    return problems


def _limit_problems(limits: RolloutLimits) -> list[str]:
    problems = []
    if limits.max_concurrent_downloads is not None and limits.max_concurrent_downloads < 1:
        problems.append("max_concurrent_downloads must be at least 1")
    rate = limits.max_starts_per_minute
    if rate is not None and not (rate > 0.0 and math.isfinite(rate)):
        problems.append("max_starts_per_minute must be a positive number")
    if limits.start_burst is not None and limits.start_burst < 1:
        problems.append("start_burst must be at least 1")
    return problems


@dataclass(frozen=True)
class FleetDevice:
    """A device of the deployment as the server knows it (``version``: what it runs now)."""

    id: str
    hardware: str
    version: str
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PhaseAssignment:
    """``phase_of``: the first phase each device is released in. ``cohorts[k]``: every device
    released by phase k (sorted). ``unknown_canaries``: ids a phase names that are not among
    the deployment's devices (reported, not silently dropped)."""

    phase_of: Mapping[str, int]
    cohorts: tuple[tuple[str, ...], ...]
    unknown_canaries: tuple[str, ...]


def assign_phases(
    plan: RolloutPlan,
    deployment_id: str,
    devices: Iterable[FleetDevice],
    *,
    pinned: Mapping[str, int] | None = None,
) -> PhaseAssignment:
    """Which phase releases each device. ``pinned``: devices already released (id -> phase);
    they keep their phase and count toward the shares, and unknown ids in it are ignored."""
    fleet = {d.id: d for d in devices}
    total = len(fleet)
    first: dict[str, int] = {}
    for device_id, index in (pinned or {}).items():
        if device_id in fleet and 0 <= index < len(plan.phases):
            first[device_id] = index
    unknown: set[str] = set()
    for index, phase in enumerate(plan.phases):
        for device_id in _canaries(phase, fleet, unknown):
            first.setdefault(device_id, index)
    order = [d for d in spread_order(deployment_id, fleet.values()) if d not in first]
    taken = 0
    for index, phase in enumerate(plan.phases):
        released = sum(1 for i in first.values() if i <= index)
        wanted = phase_quota(phase.share, total) if phase.share is not None else 0
        while taken < len(order) and released < wanted:
            first[order[taken]] = index
            taken += 1
            released += 1
    return PhaseAssignment(first, _cohorts(first, len(plan.phases)), tuple(sorted(unknown)))


def phase_quota(share: float, total: int) -> int:
    """``ceil(share * total)``, without float noise: 0.28 * 25 is 7.000000000000001 in binary
    floating point, and a 28 % phase of 25 devices is 7 devices, not 8."""
    return math.ceil(round(share * total, 9))


def _cohorts(first: Mapping[str, int], phases: int) -> tuple[tuple[str, ...], ...]:
    buckets: list[list[str]] = [[] for _ in range(phases)]
    for device_id, index in first.items():
        buckets[index].append(device_id)
    cohorts: list[tuple[str, ...]] = []
    released: list[str] = []
    for bucket in buckets:
        released = sorted(released + sorted(bucket))  # two sorted runs: a merge for timsort
        cohorts.append(tuple(released))
    return tuple(cohorts)


def _canaries(phase: Phase, fleet: Mapping[str, FleetDevice], unknown: set[str]) -> list[str]:
    chosen = []
    for device_id in phase.devices:
        if device_id in fleet:
            chosen.append(device_id)
        else:
            unknown.add(device_id)
    if phase.tags:
        tags = set(phase.tags)
        chosen += sorted(d.id for d in fleet.values() if d.tags & tags)
    return chosen


def spread_order(deployment_id: str, devices: Iterable[FleetDevice]) -> list[str]:
    """Every device id once, in the order phases take them (see the module docstring)."""
    strata: dict[tuple[str, str], list[str]] = {}
    for d in devices:
        strata.setdefault((d.hardware, d.version), []).append(d.id)
    key = hashlib.blake2b(deployment_id.encode(), digest_size=32).digest()
    for ids in strata.values():
        ids.sort(key=lambda i: (_rank(key, i), i))
    # heap of (-priority, stratum, taken); priority is infinite until a stratum has one device
    heap = [(-math.inf, s, 0) for s in sorted(strata)]
    heapq.heapify(heap)
    order: list[str] = []
    while heap:
        _, stratum, taken = heapq.heappop(heap)
        ids = strata[stratum]
        order.append(ids[taken])
        taken += 1
        if taken < len(ids):
            priority = len(ids) / math.sqrt(taken * (taken + 1))
            heapq.heappush(heap, (-priority, stratum, taken))
    return order


def _rank(key: bytes, device_id: str) -> bytes:
    return hashlib.blake2b(device_id.encode(), key=key, digest_size=8).digest()


def phase_members(assignment: PhaseAssignment, index: int) -> Sequence[str]:
    """Devices released in phase ``index`` itself (not in an earlier one), sorted."""
    return sorted(d for d, i in assignment.phase_of.items() if i == index)
