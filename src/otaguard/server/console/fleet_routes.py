"""Console pages about the fleet: the overview, devices (list and one device), releases."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Path, Query, Request, Response
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from otaguard.fleet.status import DeviceState
from otaguard.server import schemas
from otaguard.server.console import charts, timefmt, timeline
from otaguard.server.console.fleet import ContactCuts, summarize
from otaguard.server.console.fleet_query import fleet_rows
from otaguard.server.console.paging import Paging
from otaguard.server.console.render import ConsoleRoute, page, utcnow
from otaguard.server.console.session import ConsoleUser
from otaguard.server.console.signatures import release_signatures
from otaguard.server.context import ServerContext
from otaguard.server.state import Ctx

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

DEVICE_STATES: tuple[str, ...] = tuple(s.value for s in DeviceState)
#: deployments the overview lists in each of its two tables
OVERVIEW_DEPLOYMENTS = 10
#: open alerts the overview lists (the alerts page has them all)
OVERVIEW_ALERTS = 5
DEVICES_PER_PAGE = 50
EVENTS_PER_PAGE = 100
Text = Annotated[str, Query(max_length=64)]


def _latest_deployments(ctx: ServerContext, state: str) -> tuple[list[object], int]:
    total = ctx.store.count_deployments(state=state)
    offset = max(0, total - OVERVIEW_DEPLOYMENTS)
    items = ctx.store.list_deployments(state=state, limit=OVERVIEW_DEPLOYMENTS, offset=offset)
    return list(reversed(items)), total


def overview_values(ctx: ServerContext) -> dict[str, Any]:
    """Everything the overview shows (also what ``bench/console_render.py`` times)."""
    now = utcnow()
    cuts = ContactCuts.at(now, ctx.settings.poll_interval)
    summary = summarize(fleet_rows(ctx.store, cuts))
    active, active_total = _latest_deployments(ctx, "active")
    waiting, waiting_total = _latest_deployments(ctx, "awaiting_approval")
    alerts, alerts_total = ctx.store.monitoring.alerts(acknowledged=False, limit=OVERVIEW_ALERTS)
    return {
        "alerts": alerts,
        "alerts_total": alerts_total,
        "summary": summary,
        "charts": {
            "Last contact": charts.bars(summary.by_contact),
            "Update state": charts.bars(summary.by_state),
            "Version": charts.bars(summary.by_version),
            "Hardware": charts.bars(summary.by_hardware),
        },
        "active": [(d, charts.stacked(d.counts)) for d in active],  # type: ignore[attr-defined]
        "active_total": active_total,
        "waiting": waiting,
        "waiting_total": waiting_total,
        "release_count": len(ctx.store.list_releases()),
        "online_window": timefmt.duration(now - cuts.online),
    }


@router.get("/")
async def overview(request: Request, _user: ConsoleUser, ctx: Ctx) -> Response:
    values = await run_in_threadpool(overview_values, ctx)
    return page(request, "overview.html", **values)


@router.get("/devices")
async def devices(
    request: Request,
    _user: ConsoleUser,
    ctx: Ctx,
    id: Annotated[str, Query(max_length=128)] = "",
    tag: Text = "",
    hardware: Text = "",
    version: Text = "",
    state: Text = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
) -> Response:
    """Devices matching every filter, a page at a time; ``id`` jumps to one device."""
    if id:
        return RedirectResponse(f"/console/devices/{quote(id, safe='')}", status_code=303)
    filters = {"tag": tag, "hardware": hardware, "version": version, "state": state}
    paging = Paging(page_no, DEVICES_PER_PAGE)
    items, total = await run_in_threadpool(
        lambda: ctx.store.list_devices(
            **{k: v or None for k, v in filters.items()},
            limit=paging.size,
            offset=paging.offset,
        )
    )
    cuts = ContactCuts.at(utcnow(), ctx.settings.poll_interval)
    tags = await run_in_threadpool(ctx.store.tag_counts)
    releases = await run_in_threadpool(ctx.store.list_releases)
    query = urlencode({k: v for k, v in filters.items() if v})
    return page(
        request,
        "devices.html",
        devices=[(d, cuts.contact(d.last_seen).value) for d in items],
        total=total,
        paging=paging.of(total),
        query=query,
        filters=filters,
        states=DEVICE_STATES,
        tags=tags,
        hardware_values=sorted({h for r in releases for h in r.hardware}),
        versions=sorted({r.version for r in releases}),
    )


DeviceIdPath = Annotated[str, Path(pattern=schemas.DEVICE_ID)]


def _device_values(ctx: ServerContext, device_id: str, before: int | None) -> dict[str, Any]:
    device = ctx.store.get_device(device_id)
    events = ctx.store.events(device_id, limit=EVENTS_PER_PAGE + 1, before=before)
    more = len(events) > EVENTS_PER_PAGE
    events = events[1:] if more else events
    extras = ctx.store.monitoring.timeline(device_id, EVENTS_PER_PAGE)
    # the previous page ends with report ``before``: newer items were shown there
    newer = ctx.store.events(device_id, limit=1, before=before + 1) if before else []
    cuts = ContactCuts.at(utcnow(), ctx.settings.poll_interval)
    return {
        "device": device,
        "contact": cuts.contact(device.last_seen).value,
        "timeline": timeline.merge(
            list(reversed(events)),
            extras,
            upper=newer[0].created_at if newer else None,
            oldest=not more,
        ),
        "older": events[0].id if more and events else None,
        "certificates": ctx.identity.certificates(device_id),
    }


@router.get("/devices/{device_id}")
async def device(
    request: Request,
    device_id: DeviceIdPath,
    _user: ConsoleUser,
    ctx: Ctx,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
) -> Response:
    values = await run_in_threadpool(_device_values, ctx, device_id, before)
    return page(request, "device.html", **values)


@router.post("/devices/{device_id}/tags")
async def set_tags(
    device_id: DeviceIdPath,
    _user: ConsoleUser,
    ctx: Ctx,
    tags: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """Replace the device's tags (its groups), as ``PUT /api/v1/devices/{id}/tags`` does."""
    wanted = schemas.TagsIn(tags=[t.strip() for t in tags.replace(",", " ").split() if t.strip()])
    await run_in_threadpool(ctx.store.set_device_tags, device_id, wanted.tags)
    return RedirectResponse(f"/console/devices/{device_id}?done=tags", status_code=303)


def _release_values(ctx: ServerContext) -> dict[str, Any]:
    releases = list(reversed(ctx.store.list_releases()))
    signatures = release_signatures(ctx.repo, [r.target_name for r in releases])
    return {"releases": [(r, signatures[r.target_name]) for r in releases]}


@router.get("/releases")
async def releases(request: Request, _user: ConsoleUser, ctx: Ctx) -> Response:
    values = await run_in_threadpool(_release_values, ctx)
    return page(request, "releases.html", **values)
