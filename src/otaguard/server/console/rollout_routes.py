"""Console actions on a phased rollout: pause, resume, advance, abort. Each is a CSRF-protected
form post, authorized by the same RBAC action as its API twin (``deployment.control``), and
runs the same steps (``server/rollout_control.py``), so the audit entry carries the same facts
plus ``via=console``. A refusal (wrong role, a state the rollout cannot leave that way) is an
error page with the API's status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from otaguard.server import rollout_control
from otaguard.server.console.deployment_routes import changed
from otaguard.server.console.render import ConsoleRoute
from otaguard.server.console.session import ConsoleUser
from otaguard.server.routes.params import DeploymentIdPath
from otaguard.server.state import Ctx

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

Note = Annotated[str, Form(max_length=1024)]


def _done(request: Request, deployment_id: int, what: str) -> Response:
    changed(request, deployment_id)
    return RedirectResponse(f"/console/deployments/{deployment_id}?done={what}", status_code=303)


@router.post("/deployments/{deployment_id}/pause")
async def pause(
    request: Request, deployment_id: DeploymentIdPath, user: ConsoleUser, ctx: Ctx, note: Note = ""
) -> Response:
    """As ``POST /api/v1/deployments/{id}/pause``."""
    await run_in_threadpool(rollout_control.pause, ctx, request, deployment_id, user.name, note)
    return _done(request, deployment_id, "paused")


@router.post("/deployments/{deployment_id}/resume")
async def resume(
    request: Request, deployment_id: DeploymentIdPath, _user: ConsoleUser, ctx: Ctx, note: Note = ""
) -> Response:
    """As ``POST /api/v1/deployments/{id}/resume``."""
    await run_in_threadpool(rollout_control.resume, ctx, request, deployment_id, note)
    return _done(request, deployment_id, "resumed")


@router.post("/deployments/{deployment_id}/advance")
async def advance(
    request: Request,
    deployment_id: DeploymentIdPath,
    _user: ConsoleUser,
    ctx: Ctx,
    force: Annotated[bool, Form()] = False,
) -> Response:
    """As ``POST /api/v1/deployments/{id}/advance``: ask for the next phase, or force it."""
    await run_in_threadpool(
        lambda: rollout_control.advance(ctx, request, deployment_id, force=force)
    )
    return _done(request, deployment_id, "forced" if force else "advanced")


@router.post("/deployments/{deployment_id}/abort")
async def abort(
    request: Request, deployment_id: DeploymentIdPath, user: ConsoleUser, ctx: Ctx, note: Note = ""
) -> Response:
    """As ``POST /api/v1/deployments/{id}/abort``."""
    await run_in_threadpool(rollout_control.abort, ctx, request, deployment_id, user.name, note)
    return _done(request, deployment_id, "aborted")
