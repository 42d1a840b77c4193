"""Fleet monitoring: alerts (list, acknowledge), a device's timeline, health reports from
devices, and a device's lifecycle (accept for updates, decommission).

Health reports feed the rollout's health gate (``fleet/health.py``); they are small bounded
bodies and one row each, never read on the check-in path. Decommissioning revokes the device's
certificates through the device CA and stops every offer.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from otaguard.errors import NotFoundError
from otaguard.server import rollout_control
from otaguard.server import rollout_schemas as rs
from otaguard.server.auth import audit_detail
from otaguard.server.routes.params import (
    ERROR_RESPONSES,
    DeviceId,
    DeviceIdPath,
    Operator,
)
from otaguard.server.state import Ctx

router = APIRouter(prefix="/api/v1", tags=["monitoring"], responses=ERROR_RESPONSES)
device_router = APIRouter(prefix="/device/v1", tags=["device"], responses=ERROR_RESPONSES)


@router.get("/alerts", response_model=rs.AlertPage)
def alerts(
    _user: Operator,
    ctx: Ctx,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    acknowledged: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> rs.AlertPage:
    """Alerts, newest first (optionally of one ``kind``, or only (un)acknowledged ones)."""
    items, total = ctx.store.monitoring.alerts(
        kind=kind, acknowledged=acknowledged, limit=limit, offset=offset
    )
    return rs.AlertPage(
        items=[rs.AlertOut(**a.__dict__) for a in items], total=total, limit=limit, offset=offset
    )


@router.post("/alerts/{alert_id}/acknowledge", response_model=rs.AlertOut)
def acknowledge(
    alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)], user: Operator, ctx: Ctx, request: Request
) -> rs.AlertOut:
    """Mark an alert as seen (409 if it already was)."""
    return rs.AlertOut(**rollout_control.acknowledge(ctx, request, alert_id, user).__dict__)


@router.get("/devices/{device_id}/timeline", response_model=list[rs.TimelineItem])
def timeline(
    device_id: DeviceIdPath,
    _user: Operator,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[rs.TimelineItem]:
    """The device's history, oldest first: reports, health, alerts, last check-in."""
    return [rs.TimelineItem(**i) for i in ctx.store.monitoring.timeline(device_id, limit)]


@router.put("/devices/{device_id}/acceptance", response_model=rs.DeviceStatusOut)
def acceptance(
    device_id: DeviceIdPath, body: rs.AcceptanceIn, _user: Operator, ctx: Ctx, request: Request
) -> rs.DeviceStatusOut:
    """Accept (or reject) a device for updates: only accepted devices are offered any."""
    ctx.store.monitoring.set_accepted(device_id, body.accepted)
    audit_detail(request, device=device_id, accepted=body.accepted)
    if body.accepted:
        ctx.push.devices([device_id])  # updates waiting for it may be offered now (push)
    return rs.DeviceStatusOut(device_id=device_id, accepted=body.accepted)


@router.post("/devices/{device_id}/decommission", response_model=rs.DeviceStatusOut)
def decommission(
    device_id: DeviceIdPath, user: Operator, ctx: Ctx, request: Request
) -> rs.DeviceStatusOut:
    """Retire a device: no more offers, every certificate it holds revoked (409 if it was
    decommissioned already)."""
    when = ctx.store.monitoring.decommission(device_id)
    try:
        serials = ctx.device_ca.revoke(device_id=device_id, reason=f"decommissioned by user:{user}")
    except NotFoundError:  # no certificate was ever issued (a bearer-credential device)
        serials = []
    revoked = [str(s) for s in serials]
    audit_detail(request, device=device_id, revoked=revoked)
    return rs.DeviceStatusOut(
        device_id=device_id, accepted=False, decommissioned_at=when, revoked=revoked
    )


@device_router.post("/health", response_model=rs.HealthOut, status_code=201)
def health(body: rs.HealthIn, device_id: DeviceId, ctx: Ctx) -> rs.HealthOut:
    """A device's health after an update: boot time, restarts, its health check, a few
    numeric metrics (bounded). Compared with devices still on the old version before a
    rollout widens."""
    report_id = ctx.store.monitoring.record_health(
        device_id,
        version=body.version,
        boot_seconds=body.boot_seconds,
        restarts=body.restarts,
        check_passed=body.check_passed,
        metrics=body.metrics,
    )
    return rs.HealthOut(id=report_id)
