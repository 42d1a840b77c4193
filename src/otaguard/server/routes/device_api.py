"""The device API: check-in, status events, and the state of a device's deployment.

Devices authenticate by client certificate or bearer credential (``server/auth.py``). The
check-in is normally answered ahead of the framework by ``server/checkin.py``; the route here
documents it and serves when that layer is switched off, with the same functions.
"""

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from otaguard.errors import NotFoundError
from otaguard.server import checkin as checkin_flow
from otaguard.server import schemas
from otaguard.server.auth import DeviceClaim, device_claim
from otaguard.server.routes.params import ERROR_RESPONSES, DeploymentIdPath, DeviceId
from otaguard.server.state import Ctx, Metrics

router = APIRouter(prefix="/device/v1", tags=["device"], responses=ERROR_RESPONSES)


def batcher_of(request: Request) -> checkin_flow.CheckinBatcher:
    return cast(checkin_flow.CheckinBatcher, request.app.state.checkin_batcher)


_CHECKIN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CheckIn"}},
        },
    }
}


@router.post(
    "/checkin",
    response_model=schemas.CheckInReply,
    openapi_extra=_CHECKIN_BODY,
    responses={415: {"description": "Not application/json"}},
)
async def checkin(
    request: Request,
    claim: Annotated[DeviceClaim, Depends(device_claim)],
    ctx: Ctx,
    metrics: Metrics,
) -> schemas.CheckInReply | JSONResponse:
    """Report what the device runs in a version manifest it signed (DSSE envelope); get
    back what to do. The manifest is verified with the device's registered key before
    anything is recorded. (Served by ``server/checkin.py``'s lean layer unless it is
    switched off; the same functions answer either way, the body read by the same
    ``parse_checkin``: 415 unless JSON, 400 for invalid UTF-8/JSON, 422 for the schema.)"""
    try:
        body = checkin_flow.parse_checkin(request.headers.get("content-type"), await request.body())
    except ValidationError as exc:
        refused = checkin_flow.validation_reply(exc)
        return JSONResponse(refused.body, status_code=refused.status)
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
