"""Phased rollouts in the database: the evaluator's reads and writes, and operator actions.

Why a module of its own: the rollout policy is pure (``fleet/rollout.decide``, ``fleet/pacing``);
this is the thin layer that reads what it needs (plan, progress, per-phase counts, health
reports), stores the verdict, and *admits* devices: a target of a phased deployment is offered
at check-in only once admitted (``DeploymentTarget.admitted``), so the check-in hot path reads
one more column of a row it already reads and never evaluates policy itself.

Lock order is the store's (device, target rows, deployment): actions that change open targets
(abort) lock them before the deployment row; the evaluator locks the deployment and then only
touches targets no device has been offered yet (not admitted), which no report can hold.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from otaguard.errors import ForbiddenError, NotFoundError, RolloutStateError
from otaguard.fleet import progress as prog
from otaguard.fleet.pacing import TokenBucket, admit_starts, new_bucket
from otaguard.fleet.phases import FleetDevice, RolloutPlan, assign_phases, spread_order
from otaguard.fleet.plan_codec import (
    plan_from_json,
    plan_to_json,
    progress_from_json,
    progress_to_json,
)
from otaguard.fleet.progress import RolloutProgress, RolloutStatus
from otaguard.fleet.rollout import Action, Decision, decide
from otaguard.fleet.status import DeploymentState, TargetStatus
from otaguard.identity.rbac import Principal, may_approve
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.models import Deployment, DeploymentTarget, Device
from otaguard.store.rollout_reads import INSTALLED_EVENTS, health_gate, phase_counts

_OPEN = (TargetStatus.PENDING.value, TargetStatus.IN_PROGRESS.value)


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation found (``decision``) and did (``changed``: the rollout's status or
    phase moved; ``admitted``: devices newly let start, ``admitted_ids`` which)."""

    deployment_id: int
    decision: Decision
    changed: bool
    admitted: int
    admitted_ids: tuple[str, ...] = ()


def bucket_to_json(bucket: TokenBucket | None) -> dict[str, Any] | None:
    if bucket is None:
        return None
    return {
        "capacity": bucket.capacity,
        "rate_per_second": bucket.rate_per_second,
        "tokens": bucket.tokens,
        "updated_at": bucket.updated_at.isoformat(),
    }


def bucket_from_json(data: dict[str, Any] | None) -> TokenBucket | None:
    if data is None:
        return None
    return TokenBucket(
        float(data["capacity"]),
        float(data["rate_per_second"]),
        float(data["tokens"]),
        dt.datetime.fromisoformat(data["updated_at"]),
    )


def _transition(
    plan: RolloutPlan, progress: RolloutProgress, decision: Decision, now: dt.datetime
) -> RolloutProgress:
    if decision.action is Action.ADVANCE:
        return prog.advanced(plan, progress, now)
    if decision.action is Action.PAUSE:
        return prog.paused(progress, decision.message)
    if decision.action is Action.ABORT:
        return prog.aborted(progress, decision.message)
    if decision.action is Action.COMPLETE and progress.status is RolloutStatus.RUNNING:
        return prog.completed(progress)
    return progress


def _decision_json(decision: Decision) -> dict[str, Any]:
    return {
        "action": decision.action.value,
        "reason": decision.reason.value,
        "message": decision.message,
        "evidence": dict(decision.evidence),
    }


def _save(dep: Deployment, progress: RolloutProgress, decision: Decision | None) -> None:
    stored = progress_to_json(progress)
    last = (dep.rollout_progress or {}).get("last_decision")
    stored["last_decision"] = _decision_json(decision) if decision is not None else last
    dep.rollout_progress = stored
    dep.rollout_status = progress.status.value


def _progress(dep: Deployment, now: dt.datetime) -> RolloutProgress:
    if dep.rollout_progress is None:
        return prog.start(now)
    return progress_from_json(dep.rollout_progress)


def _skip_uninstalled(s: Session, deployment_id: int, note: str) -> None:
    """Targets that have not installed are cancelled: their devices skip the release (the
    agent's cancellation check sees it). Called with the open target rows already locked."""
    s.execute(
        update(DeploymentTarget)
        .where(
            DeploymentTarget.deployment_id == deployment_id,
            DeploymentTarget.status.in_(_OPEN),
            (DeploymentTarget.last_event.is_(None))
            | (DeploymentTarget.last_event.not_in(INSTALLED_EVENTS)),
        )
        .values(status=TargetStatus.CANCELLED.value, detail=note[:4096], updated_at=utcnow())
    )


class Rollouts:
    """Phased rollouts on one ``Database`` (one transaction per method).

    ``silent_after``: seconds without a report after install before a device counts as silent.
    """

    def __init__(self, db: Database, *, silent_after: float = 900.0) -> None:
        self.db = db
        self.silent_after = silent_after

    @staticmethod
    def set_plan(s: Session, dep: Deployment, plan: RolloutPlan, devices: list[Device]) -> None:
        """Give a new deployment (flushed, with its targets) a plan: phases assigned to its
        targets, none admitted until the evaluator lets them start."""
        fleet = [
            FleetDevice(d.id, d.hardware, d.current_version or "", frozenset(d.tags))
            for d in devices
        ]
        assignment = assign_phases(plan, str(dep.id), fleet)
        # Pacing admits a phase's devices in the spread order too (hardware and versions
        # take turns), not in id order.
        rank = {device_id: i for i, device_id in enumerate(spread_order(str(dep.id), fleet))}
        for target in s.scalars(
            select(DeploymentTarget).where(DeploymentTarget.deployment_id == dep.id)
        ):
            target.phase = assignment.phase_of.get(target.device_id, len(plan.phases) - 1)
            target.rank = rank.get(target.device_id)
            target.admitted = False
        dep.rollout_plan = plan_to_json(plan)
        dep.rollout_status = RolloutStatus.RUNNING.value

    def pending_ids(self) -> list[int]:
        """Active deployments with a rollout still running or paused."""
        with self.db.session(write=False) as s:
            return list(
                s.scalars(
                    select(Deployment.id)
                    .where(
                        Deployment.state == DeploymentState.ACTIVE.value,
                        Deployment.rollout_status.in_(
                            [RolloutStatus.RUNNING.value, RolloutStatus.PAUSED.value]
                        ),
                    )
                    .order_by(Deployment.id)
                )
            )

    def evaluate(self, deployment_id: int, now: dt.datetime | None = None) -> Evaluation | None:
        """Decide, record the verdict, admit devices. None: no rollout to evaluate (no plan,
        not active, or scheduled for later). An abort verdict is carried out by ``abort``."""
        now = now or utcnow()
        with self.db.session() as s:
            dep = s.get(Deployment, deployment_id, with_for_update=True)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            if dep.rollout_plan is None or dep.state != DeploymentState.ACTIVE.value:
                return None
            if dep.start_at is not None and now < dep.start_at:
                return None
            plan = plan_from_json(dep.rollout_plan)
            before = _progress(dep, now)
            counts = phase_counts(
                s, deployment_id, len(plan.phases), now - dt.timedelta(seconds=self.silent_after)
            )
            criteria = plan.phases[before.phase].criteria
            health = health_gate(s, dep) if criteria.health_gate else None
            decision = decide(plan, before, counts, now, health)
            abort, changed, admitted = decision.action is Action.ABORT, False, []
            if abort:
                _save(dep, before, decision)
            else:
                after = _transition(plan, before, decision, now)
                if after.status is RolloutStatus.COMPLETED:
                    dep.state = DeploymentState.COMPLETED.value
                    dep.outcome = decision.outcome.value if decision.outcome else None
                _save(dep, after, decision)
                admitted = self._admit(s, dep, plan, after, now)
                changed = (after.phase, after.status) != (before.phase, before.status)
        if abort:
            self.abort(deployment_id, decision.message)
            return Evaluation(deployment_id, decision, True, 0)
        return Evaluation(deployment_id, decision, changed, len(admitted), tuple(admitted))

    def _admit(
        self,
        s: Session,
        dep: Deployment,
        plan: RolloutPlan,
        progress: RolloutProgress,
        now: dt.datetime,
    ) -> list[str]:
        """Let as many waiting devices of the released phases start as pacing allows; their
        ids."""
        if progress.status is not RolloutStatus.RUNNING:
            return []
        t = DeploymentTarget
        mine = (t.deployment_id == dep.id, t.status == TargetStatus.PENDING.value)
        waiting_q = select(func.count()).where(
            *mine, t.admitted.is_(False), t.phase <= progress.phase
        )
        waiting = int(s.scalar(waiting_q) or 0)
        if not waiting:
            return []
        limits = plan.limits
        downloading = 0
        if limits.max_concurrent_downloads is not None:
            downloading = int(
                s.scalar(
                    select(func.count()).where(
                        t.deployment_id == dep.id, t.admitted.is_(True), t.status.in_(_OPEN)
                    )
                )
                or 0
            )
        bucket = bucket_from_json(dep.rollout_bucket) or new_bucket(limits, now)
        admission = admit_starts(
            limits, waiting=waiting, downloading=downloading, bucket=bucket, now=now
        )
        dep.rollout_bucket = bucket_to_json(admission.bucket)
        if not admission.starts:
            return []
        ids = list(
            s.scalars(
                select(t.device_id)
                .where(*mine, t.admitted.is_(False), t.phase <= progress.phase)
                .order_by(t.phase, t.rank, t.device_id)
                .limit(admission.starts)
            )
        )
        s.execute(
            update(t).where(t.deployment_id == dep.id, t.device_id.in_(ids)).values(admitted=True)
        )
        return ids

    # -- operator actions --------------------------------------------------------------------

    def _locked(self, s: Session, deployment_id: int) -> tuple[Deployment, RolloutPlan]:
        dep = s.get(Deployment, deployment_id, with_for_update=True, populate_existing=True)
        if dep is None:
            raise NotFoundError(f"no deployment {deployment_id}")
        if dep.rollout_plan is None:
            raise RolloutStateError(f"deployment {deployment_id} has no phased rollout")
        return dep, plan_from_json(dep.rollout_plan)

    def pause(self, deployment_id: int, note: str) -> RolloutProgress:
        with self.db.session() as s:
            dep, _plan = self._locked(s, deployment_id)
            progress = prog.paused(_progress(dep, utcnow()), note)
            _save(dep, progress, None)
            return progress

    def resume(self, deployment_id: int) -> RolloutProgress:
        """Resume; the outcomes seen so far are acknowledged (``progress.resumed``)."""
        now = utcnow()
        with self.db.session() as s:
            dep, plan = self._locked(s, deployment_id)
            cutoff = now - dt.timedelta(seconds=self.silent_after)
            counts = phase_counts(s, deployment_id, len(plan.phases), cutoff)
            progress = prog.resumed(_progress(dep, now), counts)
            _save(dep, progress, None)
            return progress

    def abort(self, deployment_id: int, note: str) -> RolloutProgress:
        """Abort: no more offers, and devices that have not installed skip the release."""
        with self.db.session() as s:
            # Open target rows before the deployment row: the order reports lock them in.
            s.execute(
                select(DeploymentTarget.device_id)
                .where(
                    DeploymentTarget.deployment_id == deployment_id,
                    DeploymentTarget.status.in_(_OPEN),
                )
                .order_by(DeploymentTarget.device_id)
                .with_for_update()
            ).all()
            dep, _plan = self._locked(s, deployment_id)
            progress = prog.aborted(_progress(dep, utcnow()), note)
            _skip_uninstalled(s, deployment_id, f"rollout aborted: {note}")
            dep.state = DeploymentState.ABORTED.value
            dep.outcome = prog.Outcome.ABORTED.value
            _save(dep, progress, None)
            return progress

    def advance(self, deployment_id: int, *, force: bool) -> RolloutProgress:
        """``force``: enter the next phase now, skipping the gates (not the approval);
        otherwise ask for it (a manual phase's criteria must still hold)."""
        now = utcnow()
        with self.db.session() as s:
            dep, plan = self._locked(s, deployment_id)
            progress = _progress(dep, now)
            if not force:
                progress = prog.request_advance(progress)
            else:
                nxt = progress.phase + 1
                gated = nxt < len(plan.phases) and plan.needs_approval(nxt)
                if gated and progress.approved_phase != nxt:
                    raise RolloutStateError(
                        f"entering phase {plan.phases[nxt].name!r} needs a second "
                        "person's approval (POST .../approve)"
                    )
                progress = prog.advanced(plan, progress, now)
            _save(dep, progress, None)
            return progress

    def approve_phase(self, deployment_id: int, approver: Principal) -> RolloutProgress:
        """Two-person rule for phases: another person than the creator lets the rollout enter
        its next phase (it still needs its criteria, or a forced advance)."""
        with self.db.session() as s:
            dep, plan = self._locked(s, deployment_id)
            verdict = may_approve(
                approver=approver.name, approver_roles=approver.roles, created_by=dep.created_by
            )
            if not verdict.allowed:
                raise ForbiddenError(verdict.reason)
            progress = _progress(dep, utcnow())
            progress = prog.approve(plan, progress, progress.phase + 1)
            _save(dep, progress, None)
            return progress

    def has_rollout(self, deployment_id: int) -> bool:
        with self.db.session(write=False) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return dep.rollout_plan is not None

    def view(self, deployment_id: int) -> dict[str, Any]:
        """The rollout as the API shows it: status, phase, the last decision, per phase its
        plan and counts."""
        now = utcnow()
        with self.db.session(write=False) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            if dep.rollout_plan is None:
                raise RolloutStateError(f"deployment {deployment_id} has no phased rollout")
            plan = plan_from_json(dep.rollout_plan)
            progress = _progress(dep, now)
            cutoff = now - dt.timedelta(seconds=self.silent_after)
            counts = phase_counts(s, deployment_id, len(plan.phases), cutoff)
            return {
                "deployment_id": dep.id,
                "state": dep.state,
                "outcome": dep.outcome,
                "status": progress.status.value,
                "phase": progress.phase,
                "phase_started_at": progress.phase_started_at,
                "note": progress.note,
                "start_at": dep.start_at,
                "last_decision": (dep.rollout_progress or {}).get("last_decision"),
                "phases": [
                    {
                        "name": p.name,
                        "share": p.share,
                        "soak_seconds": p.soak_seconds,
                        "released": i <= progress.phase,
                        "counts": counts[i].as_dict(),
                    }
                    for i, p in enumerate(plan.phases)
                ],
            }
