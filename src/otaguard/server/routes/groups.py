"""Saved dynamic groups on the management API: named filters over what devices report
(``fleet/groups.py``), their members now, and (in ``routes/deployments.py``) ``{"group":
name}`` as a deployment's selector. (Production groups, the tags that need an approver, are
``/api/v1/groups`` in ``routes/identity.py``.)"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from otaguard.server import group_schemas as gs
from otaguard.server import schemas
from otaguard.server.auth import audit_detail
from otaguard.server.routes.params import ERROR_RESPONSES, Operator
from otaguard.server.state import Ctx
from otaguard.store.groups import GroupView

router = APIRouter(prefix="/api/v1", tags=["groups"], responses=ERROR_RESPONSES)

GroupName = Annotated[str, Path(pattern=schemas.NAME)]


def _out(view: GroupView) -> gs.GroupOut:
    return gs.GroupOut(**view.__dict__)


@router.post("/dynamic-groups", response_model=gs.GroupOut, status_code=201)
def create_group(body: gs.GroupIn, user: Operator, ctx: Ctx, request: Request) -> gs.GroupOut:
    """Save a named filter (400 naming every problem of a filter that does not make sense,
    409 if the name is taken)."""
    view = ctx.store.groups.create(
        body.name, body.filter.model_dump(), description=body.description, by=user
    )
    audit_detail(request, group=view.name, filter=view.summary)
    return _out(view)


@router.get("/dynamic-groups", response_model=gs.GroupPage)
def list_groups(
    _user: Operator,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> gs.GroupPage:
    """Saved groups by name, one page at a time."""
    items, total = ctx.store.groups.list_groups(limit=limit, offset=offset)
    return gs.GroupPage(items=[_out(g) for g in items], total=total, limit=limit, offset=offset)


@router.get("/dynamic-groups/{name}", response_model=gs.GroupOut)
def get_group(name: GroupName, _user: Operator, ctx: Ctx) -> gs.GroupOut:
    return _out(ctx.store.groups.get(name))


@router.put("/dynamic-groups/{name}", response_model=gs.GroupOut)
def update_group(
    name: GroupName, body: gs.GroupUpdate, user: Operator, ctx: Ctx, request: Request
) -> gs.GroupOut:
    """Replace the group's filter and description. Deployments already made from the group
    keep their devices (membership is evaluated when a deployment is created)."""
    view = ctx.store.groups.update(
        name, body.filter.model_dump(), description=body.description, by=user
    )
    audit_detail(request, group=name, filter=view.summary)
    return _out(view)


@router.delete("/dynamic-groups/{name}", status_code=204, response_class=Response)
def delete_group(name: GroupName, _user: Operator, ctx: Ctx, request: Request) -> Response:
    """Forget the group (deployments made from it keep their devices and the filter used)."""
    view = ctx.store.groups.delete(name)
    audit_detail(request, group=name, filter=view.summary)
    return Response(status_code=204)


@router.get("/dynamic-groups/{name}/devices", response_model=gs.GroupMembersPage)
def group_devices(
    name: GroupName,
    _user: Operator,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> gs.GroupMembersPage:
    """Preview: the devices that belong to the group now, by id, one page at a time."""
    items, total = ctx.store.groups.members(name, limit=limit, offset=offset)
    return gs.GroupMembersPage(
        items=[schemas.DeviceOut(**d.__dict__) for d in items],
        total=total,
        limit=limit,
        offset=offset,
    )
