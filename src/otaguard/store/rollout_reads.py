"""What the rollout evaluator reads: per-phase counts and the health gate's two cohorts.

Why apart from ``store/rollouts.py``: these are the queries (read-only, one session passed in);
that module holds the writes and the operator actions. Both keep policy out: the verdicts are
``fleet/rollout.decide`` and ``fleet/health.compare_health``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from otaguard.fleet.health import HealthGate, HealthPolicy, HealthReport, compare_health
from otaguard.fleet.progress import PhaseCounts
from otaguard.fleet.status import TargetStatus, UpdateEvent
from otaguard.store.models import Deployment, DeploymentTarget, Device, Release
from otaguard.store.rollout_models import HealthReportRow

#: installed but not yet committed: silence from here on counts against the release
INSTALLED_EVENTS = (
    UpdateEvent.INSTALLED.value,
    UpdateEvent.REBOOTING.value,
    UpdateEvent.BOOTED.value,
)
#: health reports older than this before the deployment was created are not compared
HEALTH_LOOKBACK = dt.timedelta(days=1)


def phase_counts(
    s: Session, deployment_id: int, phases: int, cutoff: dt.datetime
) -> list[PhaseCounts]:
    """Per phase, where its devices stand (``silent``: installed, no word since ``cutoff``)."""
    t = DeploymentTarget
    raw: list[dict[str, int]] = [{} for _ in range(phases)]
    grouped = (
        select(t.phase, t.status, t.last_event, func.count())
        .where(t.deployment_id == deployment_id)
        .group_by(t.phase, t.status, t.last_event)
    )
    for phase, status, last_event, n in s.execute(grouped):
        if phase is None or not 0 <= phase < phases:
            continue
        field = _count_field(status, last_event)
        if field is not None:
            raw[phase][field] = raw[phase].get(field, 0) + int(n)
    silent = (
        select(t.phase, func.count())
        .where(
            t.deployment_id == deployment_id,
            t.status == TargetStatus.IN_PROGRESS.value,
            t.last_event.in_(INSTALLED_EVENTS),
            t.updated_at < cutoff,
        )
        .group_by(t.phase)
    )
    for phase, n in s.execute(silent):
        if phase is not None and 0 <= phase < phases:
            raw[phase]["installing"] = raw[phase].get("installing", 0) - int(n)
            raw[phase]["silent"] = int(n)
    return [PhaseCounts(**c) for c in raw]


def _count_field(status: str, last_event: str | None) -> str | None:
    if status == TargetStatus.PENDING.value:
        return "pending"
    if status == TargetStatus.IN_PROGRESS.value:
        return "installing" if last_event in INSTALLED_EVENTS else "downloading"
    if status == TargetStatus.SUCCEEDED.value:
        return "succeeded"
    if status == TargetStatus.FAILED.value:
        return "rolled_back" if last_event == UpdateEvent.ROLLED_BACK.value else "failed"
    return None  # cancelled: no longer part of the rollout


def health_gate(s: Session, dep: Deployment) -> HealthGate:
    """Latest health report per device: updated devices (succeeded here, on the release's
    version) against the control cohort (devices on another version)."""
    rel = s.get(Release, dep.target_name)
    version = rel.version if rel else None
    succeeded = set(
        s.scalars(
            select(DeploymentTarget.device_id).where(
                DeploymentTarget.deployment_id == dep.id,
                DeploymentTarget.status == TargetStatus.SUCCEEDED.value,
            )
        )
    )
    since = dep.created_at - HEALTH_LOOKBACK
    latest = (
        select(func.max(HealthReportRow.id))
        .where(HealthReportRow.created_at >= since)
        .group_by(HealthReportRow.device_id)
    )
    rows = s.execute(
        select(HealthReportRow, Device.hardware)
        .join(Device, Device.id == HealthReportRow.device_id)
        .where(HealthReportRow.id.in_(latest))
    )
    updated: list[HealthReport] = []
    control: list[HealthReport] = []
    for row, hardware in rows:
        report = HealthReport(
            row.device_id,
            hardware,
            row.boot_seconds,
            row.restarts,
            row.check_passed,
            {k: float(v) for k, v in (row.metrics or {}).items()},
        )
        if row.version == version and row.device_id in succeeded:
            updated.append(report)
        elif row.version != version and row.device_id not in succeeded:
            control.append(report)
    return compare_health(updated, control, HealthPolicy())
