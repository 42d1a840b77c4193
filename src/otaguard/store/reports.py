"""Status reports: what devices tell the server about an update as it goes (downloading,
installed, committed, rolled back...), kept as sent and applied to the device and to its
deployment.

Why a module of its own: a report is idempotent by its ``report_id`` (a device retries one
it got no answer for), bounded in size before it is stored, and moves the device's target in
its deployment and the deployment's state (``fleet.status`` decides how) in the same
transaction, locking rows in the store's order: device, target rows, deployment.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from otaguard.errors import NotFoundError
from otaguard.fleet.progress import PhaseCounts, outcome_of
from otaguard.fleet.status import (
    FINAL_TARGET_STATUSES,
    DeploymentState,
    TargetStatus,
    UpdateEvent,
    deployment_state_after,
    target_status_after,
)
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.models import Deployment, DeploymentTarget, Device, StatusEvent
from otaguard.store.views import EventView

MAX_DETAIL_CHARS = 4096


def _stored_report(s: Session, device_id: str, report_id: str) -> StatusEvent | None:
    return s.scalars(
        select(StatusEvent).where(
            StatusEvent.device_id == device_id, StatusEvent.report_id == report_id
        )
    ).first()


def _bounded(detail: dict[str, Any]) -> dict[str, Any]:
    """Keep reports bounded: long strings (log excerpts) are cut to ``MAX_DETAIL_CHARS``."""
    out: dict[str, Any] = {}
    for k, v in list(detail.items())[:32]:
        key = str(k)[:64]
        if isinstance(v, str):
            out[key] = v[-MAX_DETAIL_CHARS:] if key == "log" else v[:MAX_DETAIL_CHARS]
        elif isinstance(v, int | float | bool) or v is None:
            out[key] = v
        else:
            out[key] = str(v)[:MAX_DETAIL_CHARS]
    return out


def _apply_to_deployment(
    s: Session,
    device_id: str,
    deployment_id: int,
    event: UpdateEvent,
    detail: dict[str, Any],
) -> None:
    t = s.get(DeploymentTarget, (deployment_id, device_id), with_for_update=True)
    if t is None:
        return  # a report about a deployment this device is not part of: kept, not applied
    t.status = target_status_after(TargetStatus(t.status), event).value
    t.last_event = event.value
    reason = detail.get("error") or detail.get("reason")
    if reason:
        t.detail = str(reason)[:MAX_DETAIL_CHARS]
    t.updated_at = utcnow()
    s.flush()
    if TargetStatus(t.status) not in FINAL_TARGET_STATUSES:
        return
    # Lock order everywhere: device, then its target rows, then the deployment.
    dep = s.get(Deployment, deployment_id, with_for_update=True)
    if dep is None or dep.rollout_plan is not None:
        return  # a phased rollout is completed by its evaluator (store/rollouts.py)
    counts = {
        TargetStatus(x): int(n)
        for x, n in s.execute(
            select(DeploymentTarget.status, func.count())
            .where(DeploymentTarget.deployment_id == deployment_id)
            .group_by(DeploymentTarget.status)
        )
    }
    dep.state = deployment_state_after(DeploymentState(dep.state), counts).value
    if dep.state == DeploymentState.COMPLETED.value:
        dep.outcome = outcome_of(
            PhaseCounts(
                succeeded=counts.get(TargetStatus.SUCCEEDED, 0),
                failed=counts.get(TargetStatus.FAILED, 0),
            )
        ).value


class StatusReports:
    """Status events on one ``Database``: record them, read a device's history."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record_event(
        self,
        device_id: str,
        *,
        event: UpdateEvent,
        deployment_id: int | None,
        version: str | None,
        slot: str | None,
        detail: dict[str, Any],
        report_id: str | None = None,
    ) -> EventView:
        """Store a report and apply it to the device and its deployment, in one transaction.

        A report with a ``report_id`` the device already used is not stored or applied again:
        the stored one is returned (the device retries reports it got no answer for).
        """
        detail = _bounded(detail)
        try:
            return self._record_event(
                device_id, event, deployment_id, version, slot, detail, report_id
            )
        except IntegrityError:
            if report_id is None:
                raise
            # Another transaction stored the same report first: return that one.
            with self.db.session(write=False) as s:
                stored = _stored_report(s, device_id, report_id)
                if stored is None:
                    raise
                return EventView.of(stored)

    def _record_event(
        self,
        device_id: str,
        event: UpdateEvent,
        deployment_id: int | None,
        version: str | None,
        slot: str | None,
        detail: dict[str, Any],
        report_id: str | None,
    ) -> EventView:
        with self.db.session() as s:
            d = s.get(Device, device_id, with_for_update=True)
            if d is None:
                raise NotFoundError(f"no device {device_id}")
            if report_id is not None:
                stored = _stored_report(s, device_id, report_id)
                if stored is not None:
                    return EventView.of(stored)
            ev = StatusEvent(
                report_id=report_id,
                device_id=device_id,
                deployment_id=deployment_id,
                event=event.value,
                version=version,
                slot=slot,
                detail=detail,
            )
            s.add(ev)
            d.update_state = event.value
            d.last_seen = utcnow()
            if event in (UpdateEvent.COMMITTED, UpdateEvent.ROLLED_BACK, UpdateEvent.BOOTED):
                if version is not None:
                    d.current_version = version
                if slot is not None:
                    d.active_slot = slot
            if deployment_id is not None:
                _apply_to_deployment(s, device_id, deployment_id, event, detail)
            s.flush()
            return EventView.of(ev)

    def events(
        self, device_id: str, limit: int = 200, before: int | None = None
    ) -> list[EventView]:
        """The device's ``limit`` most recent status events (with an id below ``before``, to
        page back through its history), oldest first."""
        with self.db.session(write=False) as s:
            query = select(StatusEvent).where(StatusEvent.device_id == device_id)
            if before is not None:
                query = query.where(StatusEvent.id < before)
            rows = s.scalars(query.order_by(StatusEvent.id.desc()).limit(limit))
            return [EventView.of(e) for e in reversed(list(rows))]
