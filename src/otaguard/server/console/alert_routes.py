"""Console page of alerts (open ones first, with their evidence) and the acknowledge action.

The list reads ``Monitoring.alerts`` as ``GET /api/v1/alerts`` does; acknowledging runs the
API's own steps (``rollout_control.acknowledge``) under the same RBAC action
(``alert.acknowledge``), CSRF-protected and audited like the API call.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from otaguard.server import rollout_control
from otaguard.server.console.paging import Paging
from otaguard.server.console.render import ConsoleRoute, page
from otaguard.server.console.session import ConsoleUser
from otaguard.server.state import Ctx

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PER_PAGE = 25
#: which alerts a tab lists: acknowledged or not (None: all)
SHOWN: dict[str, bool | None] = {"open": False, "acknowledged": True, "all": None}
AlertIdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


def subject_link(subject: str) -> str | None:
    """Where the console shows an alert's subject (``device:d1``, ``hardware:x``...)."""
    kind, _, value = subject.partition(":")
    if not value:
        return None
    if kind == "device":
        return "/console/devices/" + quote(value, safe="")
    if kind == "deployment" and value.isdigit():
        return f"/console/deployments/{value}"
    if kind in ("hardware", "tag", "version"):
        return "/console/devices?" + urlencode({kind: value})
    return None


@router.get("/alerts")
async def alerts(
    request: Request,
    _user: ConsoleUser,
    ctx: Ctx,
    show: Annotated[str, Query(max_length=16)] = "open",
    page_no: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
    done: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    acknowledged = SHOWN.get(show, False)
    paging = Paging(page_no, PER_PAGE)
    items, total = await run_in_threadpool(
        lambda: ctx.store.monitoring.alerts(
            acknowledged=acknowledged, limit=paging.size, offset=paging.offset
        )
    )
    return page(
        request,
        "alerts.html",
        alerts=[(a, subject_link(a.subject)) for a in items],
        total=total,
        paging=paging.of(total),
        show=show if show in SHOWN else "open",
        tabs=tuple(SHOWN),
        done=done,
    )


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(
    request: Request, alert_id: AlertIdPath, user: ConsoleUser, ctx: Ctx
) -> Response:
    """As ``POST /api/v1/alerts/{id}/acknowledge`` (a 409 page if someone was faster)."""
    await run_in_threadpool(rollout_control.acknowledge, ctx, request, alert_id, user.name)
    return RedirectResponse(f"/console/alerts?done={alert_id}", status_code=303)
