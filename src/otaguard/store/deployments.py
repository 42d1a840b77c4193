"""Deployments: a release sent to the devices a selector picks, and each device's progress.

Why a module of its own: creating a deployment decides which devices may take the release
(``fleet.compatibility``: hardware, anti-rollback, unknown ids) and whether it waits for a
second person's approval (production tags); cancelling it must lock rows in the same order
as status reports (target rows, then the deployment) so the two never deadlock. Approval
itself is in ``identity/approval_store.py``; reports move targets in ``store/reports.py``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from packaging.version import InvalidVersion, Version
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from otaguard.errors import CompatibilityError, ConflictError, NotFoundError
from otaguard.fleet.compatibility import Candidate, select_compatible
from otaguard.fleet.phases import RolloutPlan
from otaguard.fleet.status import DeploymentState, DeviceState, TargetStatus, device_state
from otaguard.store.base import utcnow
from otaguard.store.devices import device_filter
from otaguard.store.engine import Database
from otaguard.store.groups import evaluate as evaluate_group
from otaguard.store.groups import group_filter
from otaguard.store.models import Deployment, DeploymentTarget, Device, Release
from otaguard.store.rollouts import Rollouts
from otaguard.store.transfers import TransferSummary, summaries_in, summary_fields
from otaguard.store.views import DeploymentView

_OPEN = [TargetStatus.PENDING.value, TargetStatus.IN_PROGRESS.value]


def _target_dict(t: DeploymentTarget) -> dict[str, Any]:
    return {
        "device_id": t.device_id,
        "status": t.status,
        "state": device_state(t.last_event).value,
        "last_event": t.last_event,
        "detail": t.detail,
        "updated_at": t.updated_at,
    }


def _target_filter(deployment_id: int, status: str | None, state: str | None) -> list[Any]:
    """WHERE terms for a deployment's targets; ``state`` is the device list's vocabulary
    (``DeviceState``): the target's last report, ``idle`` for none yet."""
    cond: list[Any] = [DeploymentTarget.deployment_id == deployment_id]
    if status is not None:
        cond.append(DeploymentTarget.status == status)
    if state is not None:
        if DeviceState(state) is DeviceState.IDLE:
            cond.append(DeploymentTarget.last_event.is_(None))
        else:
            cond.append(DeploymentTarget.last_event == DeviceState(state).value)
    return cond


def _deployment_view(s: Session, dep: Deployment) -> DeploymentView:
    # One GROUP BY for both summaries: by status in the deployment and by last report.
    counts: dict[str, int] = {}
    states: dict[str, int] = {}
    for status, last_event, n in s.execute(
        select(DeploymentTarget.status, DeploymentTarget.last_event, func.count())
        .where(DeploymentTarget.deployment_id == dep.id)
        .group_by(DeploymentTarget.status, DeploymentTarget.last_event)
    ):
        counts[str(status)] = counts.get(str(status), 0) + int(n)
        state = device_state(last_event).value
        states[state] = states.get(state, 0) + int(n)
    transfer = summaries_in(s, [dep.id]).get(dep.id, TransferSummary())
    return DeploymentView(
        dep.id,
        dep.name,
        dep.target_name,
        dict(dep.selector or {}),
        dep.state,
        dep.created_by,
        dep.created_at,
        counts,
        states=states,
        outcome=dep.outcome,
        rollout_status=dep.rollout_status,
        start_at=dep.start_at,
        allow_downgrade=dep.allow_downgrade,
        transfer=summary_fields(transfer),
    )


def is_downgrade(release_version: str, current: str | None) -> bool:
    """Is ``release_version`` older than what a device runs (PEP 440 ordering; versions that
    do not parse are not judged)?"""
    if current is None:
        return False
    try:
        return Version(release_version) < Version(current)
    except InvalidVersion:
        return False


def _selected_devices(s: Session, selector: dict[str, Any]) -> tuple[list[Device], set[str]]:
    """The devices ``selector`` picks, and the ids it names that are not registered. A saved
    group (``group``) is evaluated here, once: its members now (``store/groups.py``)."""
    hardware, tag = selector.get("hardware"), selector.get("tag")
    named = set(selector.get("devices") or ())
    if selector.get("group"):
        devices = [
            d
            for d in evaluate_group(s, group_filter(s, selector["group"]))
            if (not hardware or d.hardware == hardware)
            and (not tag or tag in d.tags)
            and (not named or d.id in named)
        ]
    else:
        cond = device_filter(hardware=hardware, tag=tag)
        if named:
            cond.append(Device.id.in_(sorted(named)))
        devices = list(s.scalars(select(Device).where(*cond).order_by(Device.id)))
    known = set(s.scalars(select(Device.id).where(Device.id.in_(sorted(named)))))
    return devices, named - known


def _stored_selector(s: Session, selector: dict[str, Any]) -> dict[str, Any]:
    """The selector as kept with the deployment: a group's filter is copied in (what the
    group meant when it was evaluated; the group may change or go later)."""
    if not selector.get("group"):
        return selector
    return {**selector, "group_filter": group_filter(s, selector["group"]).to_json()}


class Deployments:
    """Deployments and their targets on one ``Database`` (one transaction per method)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_deployment(
        self,
        *,
        name: str,
        target_name: str,
        selector: dict[str, Any],
        created_by: str,
        production_tags: Collection[str] = (),
        plan: RolloutPlan | None = None,
        start_at: dt.datetime | None = None,
        allow_downgrade: bool = False,
    ) -> DeploymentView:
        """Deploy a release to the devices the selector picks (all, ``tag``, ``hardware``,
        ``devices``, a saved ``group``: its members now, the filter kept in the selector). Devices that could never install it are left out with a reason
        (``fleet.compatibility``: hardware, anti-rollback, unknown ids), reported in the
        returned view's ``excluded``; if none is left the deployment is refused. If the
        selector's tag or an included device's tag is in ``production_tags``, the deployment
        waits for approval (two-person rule) and no device is offered it until then.

        ``plan``: a phased rollout (``fleet.phases``); devices are offered the release as the
        rollout evaluator admits them (a gated deployment's plan is a production plan: every
        later phase needs the approval too). ``start_at``: no device is offered it before.
        A release older than what an included device runs is refused unless
        ``allow_downgrade``."""
        with self.db.session() as s:
            rel = s.get(Release, target_name)
            if rel is None:
                raise NotFoundError(f"no release {target_name}")
            devices, unknown = _selected_devices(s, selector)
            selection = select_compatible(
                (Candidate(d.id, d.hardware, d.security_version) for d in devices),
                release_hardware=list(rel.hardware),
                release_security_version=rel.security_version,
                unknown=unknown,
            )
            if not selection.included:
                raise CompatibilityError(
                    f"no selected device ({len(devices)} matched) can install {target_name} "
                    f"(hardware {', '.join(rel.hardware)}, security version "
                    f"{rel.security_version}); left out: {selection.summary() or 'none'}"
                )
            production = set(production_tags)
            included = set(selection.included)
            older = sorted(
                d.id
                for d in devices
                if d.id in included and is_downgrade(rel.version, d.current_version)
            )
            if older and not allow_downgrade:
                raise CompatibilityError(
                    f"{target_name} (version {rel.version}) is older than what "
                    f"{len(older)} selected device(s) run (e.g. {', '.join(older[:5])}); "
                    "set allow_downgrade to deploy it anyway"
                )
            gated = selector.get("tag") in production or any(
                production.intersection(d.tags) for d in devices if d.id in included
            )
            dep = Deployment(
                name=name,
                target_name=target_name,
                selector=_stored_selector(s, selector),
                created_by=created_by,
                state=(
                    DeploymentState.AWAITING_APPROVAL if gated else DeploymentState.ACTIVE
                ).value,
                start_at=start_at,
                allow_downgrade=allow_downgrade,
            )
            s.add(dep)
            s.flush()
            for device_id in selection.included:
                s.add(DeploymentTarget(deployment_id=dep.id, device_id=device_id))
            s.flush()
            if plan is not None:
                plan = replace(plan, production=plan.production or gated)
                chosen = [d for d in devices if d.id in included]
                Rollouts.set_plan(s, dep, plan, chosen)
                s.flush()
            return replace(_deployment_view(s, dep), excluded=selection.excluded)

    def cancel_deployment(self, deployment_id: int) -> DeploymentView:
        with self.db.session() as s:
            if s.get(Deployment, deployment_id) is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            # Target rows before the deployment row: the order record_event locks them in.
            open_targets = list(
                s.scalars(
                    select(DeploymentTarget)
                    .where(
                        DeploymentTarget.deployment_id == deployment_id,
                        DeploymentTarget.status.in_(_OPEN),
                    )
                    .order_by(DeploymentTarget.device_id)
                    .with_for_update()
                )
            )
            dep = s.get(Deployment, deployment_id, with_for_update=True, populate_existing=True)
            assert dep is not None
            if dep.state not in (
                DeploymentState.ACTIVE.value,
                DeploymentState.AWAITING_APPROVAL.value,
            ):
                raise ConflictError(f"deployment {deployment_id} is {dep.state}, not active")
            dep.state = DeploymentState.CANCELLED.value
            for t in open_targets:
                t.status = TargetStatus.CANCELLED.value
                t.updated_at = utcnow()
            s.flush()
            return _deployment_view(s, dep)

    def retry_target(self, deployment_id: int, device_id: str) -> dict[str, Any]:
        """Offer the deployment again to a device that failed it (an operator's retry, e.g.
        after fixing what made its health check fail): the target is pending again and a
        completed deployment is active again. Only failed devices are retried."""
        with self.db.session() as s:
            # Target row before the deployment row: the order record_event locks them in.
            t = s.get(DeploymentTarget, (deployment_id, device_id), with_for_update=True)
            if t is None:
                raise NotFoundError(f"device {device_id} is not in deployment {deployment_id}")
            if t.status != TargetStatus.FAILED.value:
                raise ConflictError(f"device {device_id} is {t.status}; only failed devices retry")
            dep = s.get(Deployment, deployment_id, with_for_update=True)
            assert dep is not None
            if dep.state not in (DeploymentState.ACTIVE.value, DeploymentState.COMPLETED.value):
                raise ConflictError(f"deployment {deployment_id} is {dep.state}")
            t.status = TargetStatus.PENDING.value
            t.detail = f"retried after: {t.detail or t.last_event}"[:500]
            t.updated_at = utcnow()
            dep.state = DeploymentState.ACTIVE.value
            s.flush()
            return _target_dict(t)

    def get_deployment(self, deployment_id: int) -> DeploymentView:
        with self.db.session(write=False) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return _deployment_view(s, dep)

    def deployment_state(self, deployment_id: int) -> str:
        with self.db.session(write=False) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return dep.state

    def list_deployments(
        self, *, state: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[DeploymentView]:
        """Deployments by id, optionally only those in ``state``, one page at a time."""
        with self.db.session(write=False) as s:
            q = select(Deployment).order_by(Deployment.id).offset(offset).limit(limit)
            if state is not None:
                q = q.where(Deployment.state == state)
            return [_deployment_view(s, d) for d in s.scalars(q)]

    def count_deployments(self, *, state: str | None = None) -> int:
        with self.db.session(write=False) as s:
            q = select(func.count()).select_from(Deployment)
            if state is not None:
                q = q.where(Deployment.state == state)
            return int(s.scalar(q) or 0)

    def deployment_targets(
        self,
        deployment_id: int,
        *,
        status: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The deployment's devices by id, optionally only those with ``status`` and/or
        whose last report for it is ``state`` (a ``DeviceState``), one page at a time."""
        with self.db.session(write=False) as s:
            q = (
                select(DeploymentTarget)
                .where(*_target_filter(deployment_id, status, state))
                .order_by(DeploymentTarget.device_id)
                .offset(offset)
                .limit(limit)
            )
            return [_target_dict(t) for t in s.scalars(q)]

    def count_deployment_targets(
        self, deployment_id: int, *, status: str | None = None, state: str | None = None
    ) -> int:
        with self.db.session(write=False) as s:
            q = select(func.count()).where(*_target_filter(deployment_id, status, state))
            return int(s.scalar(q) or 0)

    def deployment_target(self, deployment_id: int, device_id: str) -> dict[str, Any] | None:
        """One device's row in a deployment (None if it is not part of it): one key lookup,
        for the agent's cancellation check, however large the deployment."""
        with self.db.session(write=False) as s:
            t = s.get(DeploymentTarget, (deployment_id, device_id))
            return None if t is None else _target_dict(t)
