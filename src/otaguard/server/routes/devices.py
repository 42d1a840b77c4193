"""Devices on the management API: registration, listing and detail, status history, tags
(the groups deployments select by). Certificates and enrollment are ``routes/pki.py``."""

import secrets
from typing import Annotated

from fastapi import APIRouter, Query

from otaguard.director.manifest import check_public_key
from otaguard.fleet.status import DeviceState
from otaguard.server import schemas
from otaguard.server.routes.params import ERROR_RESPONSES, DeviceIdPath, Operator
from otaguard.server.state import Ctx

router = APIRouter(prefix="/api/v1", tags=["management"], responses=ERROR_RESPONSES)


@router.post("/devices", response_model=schemas.DeviceCreated, status_code=201)
def register_device(body: schemas.DeviceIn, _user: Operator, ctx: Ctx) -> schemas.DeviceCreated:
    key = body.manifest_key
    manifest_key = check_public_key(key.model_dump(exclude_none=True)) if key is not None else None
    credential = secrets.token_urlsafe(32)
    ctx.store.register_device(
        body.id,
        body.hardware,
        credential,
        body.tags,
        manifest_key=manifest_key,
        accepted=not ctx.settings.require_device_acceptance,
    )
    return schemas.DeviceCreated(id=body.id, credential=credential)


@router.get("/devices", response_model=schemas.DevicePage)
def list_devices(
    _user: Operator,
    ctx: Ctx,
    hardware: Annotated[str | None, Query(max_length=64)] = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[DeviceState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> schemas.DevicePage:
    """Devices matching every filter given (``state``: the update state each device last
    reported, e.g. ``rolled_back`` or ``failed``), one page at a time, by id."""
    items, total = ctx.store.list_devices(
        hardware=hardware, tag=tag, version=version, state=state, limit=limit, offset=offset
    )
    return schemas.DevicePage(
        items=[schemas.DeviceOut(**d.__dict__) for d in items],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get("/devices/{device_id}", response_model=schemas.DeviceDetail)
def device_detail(device_id: DeviceIdPath, _user: Operator, ctx: Ctx) -> schemas.DeviceDetail:
    d = ctx.store.get_device(device_id)
    events = [schemas.EventOut(**e.__dict__) for e in ctx.store.events(device_id)]
    return schemas.DeviceDetail(**d.__dict__, events=events)


@router.get("/devices/{device_id}/events", response_model=schemas.EventPage)
def device_events(
    device_id: DeviceIdPath,
    _user: Operator,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> schemas.EventPage:
    """The device's status history, newest page first (each page oldest first); page back
    with ``before``."""
    ctx.store.get_device(device_id)
    items = ctx.store.events(device_id, limit=limit + 1, before=before)
    more = len(items) > limit
    items = items[1:] if more else items
    return schemas.EventPage(
        items=[schemas.EventOut(**e.__dict__) for e in items],
        next_before=items[0].id if more else None,
    )


@router.put("/devices/{device_id}/tags", response_model=schemas.DeviceOut)
def set_tags(
    device_id: DeviceIdPath, body: schemas.TagsIn, _user: Operator, ctx: Ctx
) -> schemas.DeviceOut:
    """Replace the device's tags (its groups: deployments select devices by tag)."""
    return schemas.DeviceOut(**ctx.store.set_device_tags(device_id, body.tags).__dict__)


@router.get("/tags", response_model=list[schemas.TagOut])
def tags(_user: Operator, ctx: Ctx) -> list[schemas.TagOut]:
    """Every tag (device group) in use, with how many devices carry it."""
    return [schemas.TagOut(tag=t, devices=n) for t, n in ctx.store.tag_counts()]
