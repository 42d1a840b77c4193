"""The device API: check-in, status events, and the state of a device's deployment.

Devices authenticate by client certificate or bearer credential (``server/auth.py``). The
check-in is normally answered ahead of the framework by ``server/checkin.py``; the route here
documents it and serves when that layer is switched off, with the same functions.
"""

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request

from otaguard.errors import NotFoundError
from otaguard.server import checkin as checkin_flow
from otaguard.server import schemas
from otaguard.server.auth import DeviceClaim, device_claim
from otaguard.server.routes.params import ERROR_RESPONSES, DeploymentIdPath, DeviceId
from otaguard.server.state import Ctx, Metrics

router = APIRouter(prefix="/device/v1", tags=["device"], responses=ERROR_RESPONSES)


def batcher_of(request: Request) -> checkin_flow.CheckinBatcher:
    return cast(checkin_flow.CheckinBatcher, request.app.state.checkin_batcher)


@router.post("/checkin", response_model=schemas.CheckInReply)
async def checkin(
    request: Request,
    body: schemas.CheckIn,
    claim: Annotated[DeviceClaim, Depends(device_claim)],
    ctx: Ctx,
    metrics: Metrics,
) -> schemas.CheckInReply:
    """Report what the device runs in a version manifest it signed (DSSE envelope); get
    back what to do. The manifest is verified with the device's registered key before
    anything is recorded. (Served by ``server/checkin.py``'s lean layer unless it is
    switched off; the same functions answer either way.)"""
    return await checkin_flow.check_in(
        ctx,
        metrics,
        batcher_of(request),
        request.scope,
        claim.device_id,
        claim.credential,
        body,
    )


@router.post("/events", response_model=schemas.EventOut, status_code=201)
def post_event(
    body: schemas.EventIn, device_id: DeviceId, ctx: Ctx, metrics: Metrics
) -> schemas.EventOut:
    ev = ctx.store.record_event(
        device_id,
        event=body.event,
        deployment_id=body.deployment_id,
        version=body.version,
        slot=body.slot,
        detail=dict(body.detail),
        report_id=body.report_id,
    )
    metrics.events.labels(body.event.value).inc()
    return schemas.EventOut(**ev.__dict__)


@router.get("/deployments/{deployment_id}/state", response_model=schemas.DeploymentStateOut)
def deployment_state(
    deployment_id: DeploymentIdPath, device_id: DeviceId, ctx: Ctx
) -> schemas.DeploymentStateOut:
    """Lets an agent learn that its deployment was cancelled while it downloads."""
    target = ctx.store.deployment_target(deployment_id, device_id)
    if target is None:
        raise NotFoundError(f"device is not part of deployment {deployment_id}")
    return schemas.DeploymentStateOut.model_validate(
        {
            "state": ctx.store.deployment_state(deployment_id),
            "status": str(target["status"]),
        }
    )
