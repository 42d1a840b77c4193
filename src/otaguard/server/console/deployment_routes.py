"""Console pages and actions for deployments: list, create, one deployment with its live
progress and failed devices, approve (two-person rule), cancel. Each action calls the same
store and identity methods as its API twin and is audited by ``AuditMiddleware`` the same way.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from otaguard.errors import CompatibilityError
from otaguard.fleet.status import DeviceState
from otaguard.server import schemas
from otaguard.server.console import charts
from otaguard.server.console.actions import deployment_actions
from otaguard.server.console.paging import Paging
from otaguard.server.console.progress_cache import TtlCache
from otaguard.server.console.render import ConsoleRoute, page
from otaguard.server.console.session import ConsoleUser
from otaguard.server.context import ServerContext
from otaguard.server.routes.params import DeploymentIdPath
from otaguard.server.state import Ctx

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PER_PAGE = 25
FAILED_SHOWN = 100
DEVICE_STATES: tuple[str, ...] = tuple(s.value for s in DeviceState)
DEPLOYMENT_STATES = ("awaiting_approval", "active", "completed", "cancelled")
SELECTOR_KINDS = ("all", "tag", "hardware", "devices")
DONE = {
    "created": "Deployment created.",
    "approved": "Deployment approved: its devices are offered the release from their next check-in.",
    "cancelled": "Deployment cancelled.",
}


def _newest_first(ctx: ServerContext, state: str | None, paging: Paging) -> tuple[list[Any], int]:
    total = ctx.store.count_deployments(state=state)
    end = max(0, total - paging.offset)
    start = max(0, end - paging.size)
    items = ctx.store.list_deployments(state=state, limit=end - start, offset=start) if end else []
    return list(reversed(items)), total


@router.get("/deployments")
async def deployments(
    request: Request,
    _user: ConsoleUser,
    ctx: Ctx,
    state: Annotated[str, Query(max_length=32)] = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
) -> Response:
    paging = Paging(page_no, PER_PAGE)
    items, total = await run_in_threadpool(_newest_first, ctx, state or None, paging)
    releases = await run_in_threadpool(ctx.store.list_releases)
    tags = await run_in_threadpool(ctx.store.tag_counts)
    return page(
        request,
        "deployments.html",
        deployments=[(d, charts.stacked(d.counts)) for d in items],
        total=total,
        paging=paging.of(total),
        state=state,
        states=DEPLOYMENT_STATES,
        releases=list(reversed(releases)),
        tags=tags,
        kinds=SELECTOR_KINDS,
    )


def selector_of(kind: str, value: str) -> schemas.Selector:
    """The API's selector from the form's two fields (validated by the API's own model)."""
    value = value.strip()
    if kind == "all":
        return schemas.Selector(all=True)
    if not value:
        raise CompatibilityError(f"a {kind} selector needs a value")
    if kind == "tag":
        return schemas.Selector(tag=value)
    if kind == "hardware":
        return schemas.Selector(hardware=value)
    if kind == "devices":
        return schemas.Selector(devices=value.replace(",", " ").split())
    raise CompatibilityError("selector must pick devices: all, tag, hardware or devices")


@router.post("/deployments")
async def create_deployment(
    user: ConsoleUser,
    ctx: Ctx,
    name: Annotated[str, Form(max_length=64)] = "",
    target_name: Annotated[str, Form(max_length=255)] = "",
    kind: Annotated[str, Form(max_length=16)] = "",
    value: Annotated[str, Form(max_length=100_000)] = "",
) -> Response:
    """As ``POST /api/v1/deployments``: the API's body model, then the same store call."""
    body = schemas.DeploymentIn(
        name=name, target_name=target_name, selector=selector_of(kind, value)
    )
    dep = await run_in_threadpool(
        lambda: ctx.store.create_deployment(
            name=body.name,
            target_name=body.target_name,
            selector=body.selector.model_dump(exclude_none=True),
            created_by=user.name,
            production_tags=ctx.identity.production_groups(),
        )
    )
    return RedirectResponse(
        f"/console/deployments/{dep.id}?done=created&excluded={len(dep.excluded)}",
        status_code=303,
    )


def _detail_values(
    ctx: ServerContext, deployment_id: int, status: str | None, state: str | None
) -> dict[str, Any]:
    dep = ctx.store.get_deployment(deployment_id)
    targets = ctx.store.deployment_targets(
        deployment_id, status=status, state=state, limit=PER_PAGE * 4
    )
    return {
        "dep": dep,
        "segments": charts.stacked(dep.counts),
        "approved_by": ctx.identity.approval(deployment_id),
        "failed": ctx.store.deployment_targets(deployment_id, status="failed", limit=FAILED_SHOWN),
        "targets": targets,
    }


@router.get("/deployments/{deployment_id}")
async def deployment(
    request: Request,
    deployment_id: DeploymentIdPath,
    user: ConsoleUser,
    ctx: Ctx,
    status: Annotated[str, Query(max_length=32)] = "",
    state: Annotated[str, Query(max_length=32)] = "",
    done: Annotated[str, Query(max_length=16)] = "",
    excluded: Annotated[int, Query(ge=0, le=10**6)] = 0,
) -> Response:
    """One deployment; its devices filtered by ``status`` and/or ``state`` (the device
    list's vocabulary, ``fleet.status.DeviceState``: an unknown one filters nothing out)."""
    as_of = int(time.time() * 1000)  # before the read, as ``progress_of`` stamps its own
    state = state if state in DEVICE_STATES else ""
    values = await run_in_threadpool(
        _detail_values, ctx, deployment_id, status or None, state or None
    )
    values["as_of"] = as_of
    dep = values["dep"]
    return page(
        request,
        "deployment.html",
        **values,
        filter_status=status,
        filter_state=state,
        states=DEVICE_STATES,
        done=DONE.get(done, ""),
        excluded=excluded,
        actions=deployment_actions(dep.state, dep.created_by, user),
        order=charts.PROGRESS_ORDER,
    )


def progress_of(ctx: ServerContext, deployment_id: int) -> dict[str, Any]:
    """The deployment's counts, stamped with when they were read (``as_of``, epoch ms): the
    page ignores an answer older than itself, so a cached read never undoes what it shows."""
    as_of = int(time.time() * 1000)
    dep = ctx.store.get_deployment(deployment_id)
    return {
        "as_of": as_of,
        "id": dep.id,
        "state": dep.state,
        "counts": {s: dep.counts.get(s, 0) for s in charts.PROGRESS_ORDER},
        "total": dep.total,
        "segments": [seg.__dict__ for seg in charts.stacked(dep.counts)],
        "final": dep.state in ("completed", "cancelled"),
    }


@router.get("/deployments/{deployment_id}/progress")
async def progress(
    request: Request, deployment_id: DeploymentIdPath, _user: ConsoleUser, ctx: Ctx
) -> Response:
    """The progress the page polls (read from the database at most once a second per
    deployment, whatever the number of browsers watching)."""
    cache: TtlCache[dict[str, Any]] = request.app.state.console_progress
    body = await run_in_threadpool(
        cache.get, deployment_id, time.monotonic(), lambda: progress_of(ctx, deployment_id)
    )
    return JSONResponse(body)


def _changed(request: Request, deployment_id: int) -> None:
    cache: TtlCache[dict[str, Any]] = request.app.state.console_progress
    cache.forget(deployment_id)


@router.post("/deployments/{deployment_id}/approve")
async def approve(
    request: Request, deployment_id: DeploymentIdPath, user: ConsoleUser, ctx: Ctx
) -> Response:
    """Second person of the two-person rule, as ``POST /api/v1/deployments/{id}/approve``."""
    await run_in_threadpool(ctx.identity.approve, deployment_id, user)
    _changed(request, deployment_id)
    return RedirectResponse(f"/console/deployments/{deployment_id}?done=approved", status_code=303)


@router.post("/deployments/{deployment_id}/cancel")
async def cancel(
    request: Request, deployment_id: DeploymentIdPath, _user: ConsoleUser, ctx: Ctx
) -> Response:
    await run_in_threadpool(ctx.store.cancel_deployment, deployment_id)
    _changed(request, deployment_id)
    return RedirectResponse(f"/console/deployments/{deployment_id}?done=cancelled", status_code=303)
