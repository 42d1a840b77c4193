"""Deployments: a release sent to the devices a selector picks, their progress, cancelling.
(Approval under the two-person rule is an identity route: ``routes/identity.py``.)"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from otaguard.errors import CompatibilityError
from otaguard.fleet.plan_codec import plan_from_json
from otaguard.fleet.status import DeviceState
from otaguard.server import schemas
from otaguard.server.auth import audit_detail
from otaguard.server.routes.params import (
    ERROR_RESPONSES,
    DeploymentIdPath,
    DeviceIdPath,
    Operator,
)
from otaguard.server.state import Ctx

router = APIRouter(prefix="/api/v1", tags=["management"], responses=ERROR_RESPONSES)


def _dep_out(d: Any) -> schemas.DeploymentOut:
    return schemas.DeploymentOut(**d.__dict__, total=d.total)


@router.post("/deployments", response_model=schemas.DeploymentCreated, status_code=201)
def create_deployment(
    body: schemas.DeploymentIn, user: Operator, ctx: Ctx, request: Request
) -> schemas.DeploymentCreated:
    """Deploy a release to the devices the selector picks. Devices that could never
    install it are left out and listed in ``excluded`` with the reason; 422 when none is
    left (nothing is created), or when the release is older than what a selected device
    runs and ``allow_downgrade`` is not set. With a ``plan``, devices are released phase by
    phase (``GET .../rollout``); a malformed plan is refused (400) listing every problem."""
    selector = body.selector.model_dump(exclude_none=True)
    if not any(selector.get(k) for k in ("all", "tag", "hardware", "devices", "group")):
        raise CompatibilityError("selector must pick devices: all, tag, hardware, devices or group")
    plan = plan_from_json(body.plan) if body.plan is not None else None
    audit_detail(request, phased=plan is not None, allow_downgrade=body.allow_downgrade)
    if body.selector.group:
        audit_detail(request, group=body.selector.group)
    dep = ctx.store.create_deployment(
        name=body.name,
        target_name=body.target_name,
        selector=selector,
        created_by=user,
        production_tags=ctx.identity.production_groups(),
        plan=plan,
        start_at=body.start_at,
        allow_downgrade=body.allow_downgrade,
    )
    ctx.push.deployment(dep.id)  # push wake-ups to the devices it offers to now (if any)
    return schemas.DeploymentCreated(
        **_dep_out(dep).model_dump(),
        excluded=[
            schemas.ExcludedDeviceOut(device_id=e.device_id, reason=e.reason.value, detail=e.detail)
            for e in dep.excluded
        ],
    )


@router.get("/deployments", response_model=schemas.DeploymentPage)
def list_deployments(
    _user: Operator,
    ctx: Ctx,
    state: Annotated[schemas.DeploymentStateName | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> schemas.DeploymentPage:
    """Deployments by id (optionally only those in ``state``), one page at a time."""
    items = ctx.store.list_deployments(state=state, limit=limit, offset=offset)
    return schemas.DeploymentPage(
        items=[_dep_out(d) for d in items],
        total=ctx.store.count_deployments(state=state),
        limit=limit,
        offset=offset,
    )


@router.get("/deployments/{deployment_id}", response_model=schemas.DeploymentOut)
def get_deployment(
    deployment_id: DeploymentIdPath, _user: Operator, ctx: Ctx
) -> schemas.DeploymentOut:
    return _dep_out(ctx.store.get_deployment(deployment_id))


@router.get("/deployments/{deployment_id}/devices", response_model=schemas.DeploymentTargetPage)
def deployment_devices(
    deployment_id: DeploymentIdPath,
    _user: Operator,
    ctx: Ctx,
    status: Annotated[schemas.TargetStatusName | None, Query()] = None,
    state: Annotated[DeviceState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> schemas.DeploymentTargetPage:
    """The deployment's devices by id with where each stands, one page at a time; optionally
    only those with ``status`` (e.g. ``failed``) and/or whose last report for it is ``state``
    (the device list's vocabulary: ``rolled_back``, ``waiting``...; ``idle``: none yet)."""
    ctx.store.get_deployment(deployment_id)
    rows = ctx.store.deployment_targets(
        deployment_id, status=status, state=state, limit=limit, offset=offset
    )
    return schemas.DeploymentTargetPage(
        items=[schemas.DeploymentTargetOut(**t) for t in rows],
        total=ctx.store.count_deployment_targets(deployment_id, status=status, state=state),
        limit=limit,
        offset=offset,
    )


@router.post("/deployments/{deployment_id}/cancel", response_model=schemas.DeploymentOut)
def cancel_deployment(
    deployment_id: DeploymentIdPath, _user: Operator, ctx: Ctx
) -> schemas.DeploymentOut:
    dep = ctx.store.cancel_deployment(deployment_id)
    ctx.push.cancelled(deployment_id)
    return _dep_out(dep)


@router.post(
    "/deployments/{deployment_id}/devices/{device_id}/retry",
    response_model=schemas.DeploymentTargetOut,
)
def retry_device(
    deployment_id: DeploymentIdPath, device_id: DeviceIdPath, _user: Operator, ctx: Ctx
) -> schemas.DeploymentTargetOut:
    """Offer the deployment again to a device that failed it (409 unless it failed)."""
    target = ctx.store.retry_target(deployment_id, device_id)
    ctx.push.devices([device_id])
    return schemas.DeploymentTargetOut(**target)
