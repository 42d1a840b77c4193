"""``otaguard mgmt deployments``: create, approve, cancel, follow and inspect rollouts.

State changes (approve, cancel; pause and resume once phased rollouts exist) are one command
each over ``_change``: a POST on the deployment, then its new state printed the same way.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from otaguard.cli.manage.output import as_json, fields, note, page_note, table
from otaguard.cli.manage.runtime import JsonOpt, LimitOpt, OffsetOpt, client, fail
from otaguard.cli.manage.watch import watch
from otaguard.fleet.status import DeviceState
from otaguard.fleet.transfer_view import transfer_lines
from otaguard.fleet_client import FleetClient

deployments_app = typer.Typer(
    help="Deployments: create, approve, cancel, watch.", no_args_is_help=True
)

DeploymentArg = Annotated[int, typer.Argument(min=1, help="Deployment id.", metavar="ID")]
State = Literal["awaiting_approval", "active", "completed", "cancelled"]
Status = Literal["pending", "in_progress", "succeeded", "failed", "cancelled"]

DEPLOYMENT_COLUMNS = [
    ("id", "id"),
    ("name", "name"),
    ("release", "target_name"),
    ("state", "state"),
    ("devices", "total"),
    ("progress", "counts"),
    ("created by", "created_by"),
    ("created", "created_at"),
]
TARGET_COLUMNS = [
    ("device", "device_id"),
    ("status", "status"),
    ("state", "state"),
    ("detail", "detail"),
    ("updated", "updated_at"),
]
IntervalOpt = Annotated[
    float, typer.Option("--interval", min=1.0, max=60.0, help="Seconds between polls (at least).")
]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", min=1.0, help="Stop watching after this many s.")
]


@deployments_app.command("list")
def deployments_list(
    ctx: typer.Context,
    state: Annotated[State | None, typer.Option(help="Only deployments in this state.")] = None,
    limit: LimitOpt = 100,
    offset: OffsetOpt = 0,
    json: JsonOpt = False,
) -> None:
    """Deployments by id, one page at a time."""
    with client(ctx) as api:
        page = api.deployments(state=state, limit=limit, offset=offset)
    if json:
        as_json(page)
        return
    table(page["items"], DEPLOYMENT_COLUMNS)
    page_note(page)


def _show(d: dict[str, Any], title: str) -> None:
    fields(d, [*DEPLOYMENT_COLUMNS, ("by state", "states"), ("selector", "selector")], title=title)


@deployments_app.command("show")
def deployments_show(ctx: typer.Context, deployment: DeploymentArg, json: JsonOpt = False) -> None:
    """One deployment: release, selector, state, how many devices stand where, and the bytes
    served for it (sent, what full images would have needed, saved, devices by a delta)."""
    with client(ctx) as api:
        d = api.deployment(deployment)
    if json:
        as_json(d)
        return
    _show(d, f"deployment {deployment}")
    lines = transfer_lines(d.get("transfer"))
    fields(dict(lines), [(k, k) for k, _ in lines], title="bytes served")


@deployments_app.command("devices")
def deployments_devices(
    ctx: typer.Context,
    deployment: DeploymentArg,
    status: Annotated[Status | None, typer.Option(help="Only devices with this status.")] = None,
    state: Annotated[
        DeviceState | None,
        typer.Option(help="Only devices whose last report for it is this (as `devices list`)."),
    ] = None,
    limit: LimitOpt = 100,
    offset: OffsetOpt = 0,
    json: JsonOpt = False,
) -> None:
    """The deployment's devices and where each stands (``--status failed``: what went wrong;
    ``--state rolled_back`` or ``--state waiting``: the same filter as ``devices list``)."""
    with client(ctx) as api:
        page = api.deployment_devices_page(
            deployment, status=status, state=state, limit=limit, offset=offset
        )
    if json:
        as_json(page)
        return
    table(page["items"], TARGET_COLUMNS, title=f"devices of deployment {deployment}")
    page_note(page)


def selector_of(
    *,
    all_devices: bool,
    tag: str | None,
    hardware: str | None,
    devices: list[str],
    group: str | None = None,
) -> dict[str, Any]:
    """The API's selector from the options; exactly one way of choosing must be given."""
    chosen = {
        "all": all_devices or None,
        "tag": tag,
        "hardware": hardware,
        "devices": devices or None,
        "group": group,
    }
    selector = {k: v for k, v in chosen.items() if v is not None}
    if len(selector) != 1:
        raise ValueError(
            "choose the devices one way: --all, --tag, --hardware, --device or --group"
        )
    return selector


@deployments_app.command("create")
def deployments_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A name, e.g. canary-2-0-0.")],
    release: Annotated[str, typer.Option("--release", "-r", help="Target name to deploy.")],
    all_devices: Annotated[bool, typer.Option("--all", help="Every device.")] = False,
    tag: Annotated[str | None, typer.Option("--tag", help="Devices with this tag.")] = None,
    hardware: Annotated[str | None, typer.Option("--hardware", help="This hardware.")] = None,
    device: Annotated[list[str] | None, typer.Option("--device", "-d", help="A device.")] = None,
    group: Annotated[
        str | None,
        typer.Option("--group", help="A saved dynamic group (its members now: evaluated once)."),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", help="A phased rollout plan, JSON (docs/DESIGN.md, Rollouts)."),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Deploy a release to the chosen devices; those that could never install it are left out
    and listed. A deployment reaching a production group waits for an approver. With --plan it
    rolls out in phases."""
    try:
        selector = selector_of(
            all_devices=all_devices, tag=tag, hardware=hardware, devices=device or [], group=group
        )
        phases = jsonlib.loads(plan.read_text()) if plan is not None else None
    except (ValueError, OSError) as exc:
        fail(str(exc))
    with client(ctx) as api:
        d = api.create_phased_deployment(name, release, selector, phases)
    if json:
        as_json(d)
        return
    _show(d, f"deployment {d['id']} created")
    if d["excluded"]:
        table(d["excluded"], [("device", "device_id"), ("left out", "reason"), ("why", "detail")])
    if d["state"] == "awaiting_approval":
        note(f"waits for an approver: otaguard mgmt deployments approve {d['id']}")


def _change(
    ctx: typer.Context, deployment: int, verb: str, call: Callable[[FleetClient], Any], json: bool
) -> None:
    with client(ctx) as api:
        reply = call(api)
        d = api.deployment(deployment)
    if json:
        as_json(reply)
        return
    note(f"deployment {deployment} {verb}: now {d['state']}")


@deployments_app.command("approve")
def deployments_approve(
    ctx: typer.Context, deployment: DeploymentArg, json: JsonOpt = False
) -> None:
    """Approve a deployment waiting for it (an approver who did not create it)."""
    _change(ctx, deployment, "approved", lambda api: api.approve_deployment(deployment), json)


@deployments_app.command("cancel")
def deployments_cancel(
    ctx: typer.Context,
    deployment: DeploymentArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json: JsonOpt = False,
) -> None:
    """Cancel a deployment: devices not yet updating are not offered it any more."""
    if not yes and not typer.confirm(f"cancel deployment {deployment}?", err=True):
        fail("not confirmed")
    _change(ctx, deployment, "cancelled", lambda api: api.cancel_deployment(deployment), json)


@deployments_app.command("watch")
def deployments_watch(
    ctx: typer.Context,
    deployment: DeploymentArg,
    interval: IntervalOpt = 2.0,
    timeout: TimeoutOpt = None,
    json: JsonOpt = False,
) -> None:
    """Follow a deployment with a live progress bar (one per phase for a phased rollout) until
    it finishes. Exit status: 0 every device succeeded, 1 some failed or it was cancelled or
    aborted, 3 timed out, 130 Ctrl-C (the deployment goes on)."""
    with client(ctx) as api:

        def fetch() -> dict[str, Any]:
            reply = api.deployment(deployment)
            if reply.get("rollout_status"):  # phased: its phases too, for a bar each
                reply = {**reply, "rollout": api.rollout(deployment)}
            return reply

        code = watch(
            fetch,
            deployment,
            interval=interval,
            timeout=timeout,
            json=json,
        )
    raise typer.Exit(code=code)
