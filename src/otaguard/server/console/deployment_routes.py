"""Console pages and actions for deployments: list, create (optionally phased), one deployment
with its live progress (per phase for a phased rollout) and failed devices, approve (two-person
rule), cancel. Each action calls the same store and identity methods as its API twin and is
audited by ``AuditMiddleware`` the same way. The rollout controls are ``rollout_routes.py``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from otaguard.errors import CompatibilityError
from otaguard.fleet.phases import RolloutPlan
from otaguard.fleet.plan_codec import plan_from_json
from otaguard.fleet.status import DeviceState
from otaguard.fleet.transfer_view import transfer_lines
from otaguard.server import rollout_control, schemas
from otaguard.server.auth import audit_detail
from otaguard.server.console import charts, phases
from otaguard.server.console.actions import FINAL_STATES, deployment_actions
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
DEPLOYMENT_STATES = ("awaiting_approval", "active", "completed", "cancelled", "aborted")
ADVANCE_MODES = ("auto", "manual")
MAX_PHASES = 10
SELECTOR_KINDS = ("all", "tag", "hardware", "devices")
DONE = {
    "created": "Deployment created.",
    "approved": "Approved: the devices it releases are offered the release from their next check-in.",
    "cancelled": "Deployment cancelled.",
    "paused": "Rollout paused: no further device starts it until it is resumed.",
    "resumed": "Rollout resumed.",
    "advanced": "Asked to advance: the next phase opens as soon as its criteria hold.",
    "forced": "Next phase entered now.",
    "aborted": "Rollout aborted: devices that have not installed the release skip it.",
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


def plan_of(shares: str, soak_minutes: int, advance: str) -> dict[str, Any] | None:
    """A plan from the form's fields: cumulative percentages ("10 50 100"), a soak time per
    phase and how to advance; None for an unphased deployment. Checked again, with every
    other rule, by the API's own reader (``plan_from_json``)."""
    parts = shares.replace(",", " ").replace("%", " ").split()
    if not parts:
        return None
    if len(parts) > MAX_PHASES:
        raise CompatibilityError(f"at most {MAX_PHASES} phases")
    if advance not in ADVANCE_MODES:
        raise CompatibilityError("advance must be auto or manual")
    try:
        percents = [float(p) for p in parts]
    except ValueError:
        percents = []
    if not percents or not all(0 < p <= 100 for p in percents):  # also refuses nan and inf
        raise CompatibilityError("phases are percentages of the devices, e.g. 10 50 100")
    return {
        "phases": [
            {
                "name": f"{p:g}%",
                "share": p / 100,
                "soak_seconds": soak_minutes * 60,
                "advance": advance,
            }
            for p in percents
        ]
    }


@router.post("/deployments")
async def create_deployment(
    request: Request,
    user: ConsoleUser,
    ctx: Ctx,
    name: Annotated[str, Form(max_length=64)] = "",
    target_name: Annotated[str, Form(max_length=255)] = "",
    kind: Annotated[str, Form(max_length=16)] = "",
    value: Annotated[str, Form(max_length=100_000)] = "",
    shares: Annotated[str, Form(max_length=200)] = "",
    soak_minutes: Annotated[int, Form(ge=0, le=7 * 24 * 60)] = 60,
    advance: Annotated[str, Form(max_length=16)] = "auto",
) -> Response:
    """As ``POST /api/v1/deployments``: the API's body model and plan reader, then the same
    store call."""
    body = schemas.DeploymentIn(
        name=name,
        target_name=target_name,
        selector=selector_of(kind, value),
        plan=plan_of(shares, soak_minutes, advance),
    )
    plan: RolloutPlan | None = plan_from_json(body.plan) if body.plan is not None else None
    audit_detail(request, phased=plan is not None, allow_downgrade=False)
    dep = await run_in_threadpool(
        lambda: ctx.store.create_deployment(
            name=body.name,
            target_name=body.target_name,
            selector=body.selector.model_dump(exclude_none=True),
            created_by=user.name,
            production_tags=ctx.identity.production_groups(),
            plan=plan,
        )
    )
    ctx.push.deployment(dep.id)  # push wake-ups, as the API route does
    return RedirectResponse(
        f"/console/deployments/{dep.id}?done=created&excluded={len(dep.excluded)}",
        status_code=303,
    )


def _detail_values(
    ctx: ServerContext, deployment_id: int, status: str | None, state: str | None
) -> dict[str, Any]:
    dep = ctx.store.get_deployment(deployment_id)
    view = ctx.store.rollouts.view(deployment_id) if dep.rollout_status else None
    targets = ctx.store.deployment_targets(
        deployment_id, status=status, state=state, limit=PER_PAGE * 4
    )
    return {
        "dep": dep,
        "rollout": view,
        "phase_rows": phases.phase_rows(view) if view else [],
        "decision": phases.decision_text(view) if view else "",
        "segments": charts.stacked(dep.counts),
        "transfer": transfer_lines(dep.transfer),
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
    dep, view = values["dep"], values["rollout"]
    facts = phases.facts(view) if view else None
    return page(
        request,
        "deployment.html",
        **values,
        filter_status=status,
        filter_state=state,
        states=DEVICE_STATES,
        done=DONE.get(done, ""),
        excluded=excluded,
        actions=deployment_actions(dep.state, dep.created_by, user, facts),
        order=charts.PROGRESS_ORDER,
        phase_order=charts.PHASE_ORDER,
        final_states=FINAL_STATES,
    )


def progress_of(ctx: ServerContext, deployment_id: int) -> dict[str, Any]:
    """The deployment's counts, stamped with when they were read (``as_of``, epoch ms): the
    page ignores an answer older than itself, so a cached read never undoes what it shows."""
    as_of = int(time.time() * 1000)
    dep = ctx.store.get_deployment(deployment_id)
    view = ctx.store.rollouts.view(deployment_id) if dep.rollout_status else None
    return {
        "as_of": as_of,
        "id": dep.id,
        "state": dep.state,
        "counts": {s: dep.counts.get(s, 0) for s in charts.PROGRESS_ORDER},
        "total": dep.total,
        "segments": [seg.__dict__ for seg in charts.stacked(dep.counts)],
        "final": dep.state in FINAL_STATES,
        "rollout": None
        if view is None
        else {
            "status": view["status"],
            "phase": view["phase"],
            "decision": phases.decision_text(view),
            "phases": [row.as_json() for row in phases.phase_rows(view)],
        },
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


def changed(request: Request, deployment_id: int) -> None:
    """An action changed the deployment here: the next poll reads it afresh."""
    cache: TtlCache[dict[str, Any]] = request.app.state.console_progress
    cache.forget(deployment_id)


@router.post("/deployments/{deployment_id}/approve")
async def approve(
    request: Request, deployment_id: DeploymentIdPath, user: ConsoleUser, ctx: Ctx
) -> Response:
    """Second person of the two-person rule, as ``POST /api/v1/deployments/{id}/approve``."""
    await run_in_threadpool(rollout_control.approve, ctx, deployment_id, user)
    changed(request, deployment_id)
    return RedirectResponse(f"/console/deployments/{deployment_id}?done=approved", status_code=303)


@router.post("/deployments/{deployment_id}/cancel")
async def cancel(
    request: Request, deployment_id: DeploymentIdPath, _user: ConsoleUser, ctx: Ctx
) -> Response:
    await run_in_threadpool(ctx.store.cancel_deployment, deployment_id)
    ctx.push.cancelled(deployment_id)
    changed(request, deployment_id)
    return RedirectResponse(f"/console/deployments/{deployment_id}?done=cancelled", status_code=303)
