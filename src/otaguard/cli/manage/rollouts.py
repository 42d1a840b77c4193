"""``otaguard mgmt deployments rollout|pause|resume|abort|advance|evaluate|retry``,
``otaguard mgmt alerts``, ``otaguard mgmt devices timeline|accept|decommission`` and
``otaguard mgmt password``: phased rollouts, alerts and device lifecycle (docs/DESIGN.md,
"Rollouts"), through the same API routes, roles and audit as any client."""

from __future__ import annotations

from typing import Annotated

import typer

from otaguard.cli.manage.deployments import DeploymentArg, deployments_app
from otaguard.cli.manage.devices import DeviceArg, devices_app
from otaguard.cli.manage.output import as_json, note, table
from otaguard.cli.manage.runtime import JsonOpt, LimitOpt, OffsetOpt, client

alerts_app = typer.Typer(help="Alerts: list and acknowledge.", no_args_is_help=True)
NoteOpt = Annotated[str, typer.Option("--note", help="Why (kept in the audit log).")]

ALERT_COLUMNS = [
    ("id", "id"),
    ("kind", "kind"),
    ("severity", "severity"),
    ("subject", "subject"),
    ("message", "message"),
    ("acknowledged by", "acknowledged_by"),
]
TIMELINE_COLUMNS = [("at", "at"), ("kind", "kind"), ("what", "summary")]


def _control(
    ctx: typer.Context, deployment: int, verb: str, body: dict[str, object], json: bool
) -> None:
    with client(ctx) as api:
        reply = api.control(deployment, verb, body)
    if json:
        as_json(reply)
    elif verb == "evaluate":
        note(f"deployment {deployment} evaluated: {reply.get('action')} ({reply.get('reason')})")
    else:
        note(f"deployment {deployment} {verb}: rollout {reply.get('status', '?')}")


@deployments_app.command("rollout")
def deployments_rollout(
    ctx: typer.Context, deployment: DeploymentArg, json: JsonOpt = False
) -> None:
    """A phased rollout's state and per-phase counts."""
    with client(ctx) as api:
        reply = api.rollout(deployment)
    if json:
        as_json(reply)
        return
    note(f"deployment {deployment}: rollout {reply.get('status', '?')}")
    phases = reply.get("phases", [])
    cols = [(k, k) for k in (phases[0].keys() if phases else ["phase"]) if k != "counts"]
    table(phases, cols, title=f"phases of deployment {deployment}")


@deployments_app.command("pause")
def deployments_pause(
    ctx: typer.Context, deployment: DeploymentArg, why: NoteOpt = "", json: JsonOpt = False
) -> None:
    """Pause a phased rollout: no device starts it until it is resumed (audited)."""
    _control(ctx, deployment, "pause", {"note": why}, json)


@deployments_app.command("resume")
def deployments_resume(
    ctx: typer.Context, deployment: DeploymentArg, why: NoteOpt = "", json: JsonOpt = False
) -> None:
    """Resume a paused rollout (the failures seen so far are accepted; audited)."""
    _control(ctx, deployment, "resume", {"note": why}, json)


@deployments_app.command("abort")
def deployments_abort(
    ctx: typer.Context, deployment: DeploymentArg, why: NoteOpt = "", json: JsonOpt = False
) -> None:
    """Abort a rollout: devices that have not installed it skip it (audited)."""
    _control(ctx, deployment, "abort", {"note": why}, json)


@deployments_app.command("advance")
def deployments_advance(
    ctx: typer.Context,
    deployment: DeploymentArg,
    force: Annotated[bool, typer.Option("--force", help="Skip the current phase's gate.")] = False,
    json: JsonOpt = False,
) -> None:
    """Move a rollout to its next phase (a phase waiting for an operator, or --force)."""
    _control(ctx, deployment, "advance", {"force": force}, json)


@deployments_app.command("evaluate")
def deployments_evaluate(
    ctx: typer.Context, deployment: DeploymentArg, json: JsonOpt = False
) -> None:
    """Evaluate a rollout now instead of at the server's next pass."""
    _control(ctx, deployment, "evaluate", {}, json)


@deployments_app.command("retry")
def deployments_retry(
    ctx: typer.Context, deployment: DeploymentArg, device: DeviceArg, json: JsonOpt = False
) -> None:
    """Offer a deployment again to a device it failed on."""
    with client(ctx) as api:
        reply = api.retry_device(deployment, device)
    if json:
        as_json(reply)
    else:
        note(f"deployment {deployment}: {device} offered again ({reply.get('status', '?')})")


@alerts_app.command("list")
def alerts_list(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="Only alerts of this kind.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only unacknowledged alerts.")] = False,
    limit: LimitOpt = 50,
    offset: OffsetOpt = 0,
    json: JsonOpt = False,
) -> None:
    """Alerts, newest first."""
    with client(ctx) as api:
        page = api.alerts(
            kind=kind, acknowledged=False if open_only else None, limit=limit, offset=offset
        )
    if json:
        as_json(page)
    else:
        table(page.get("items", []), ALERT_COLUMNS, title="alerts")


@alerts_app.command("ack")
def alerts_ack(
    ctx: typer.Context,
    alert: Annotated[int, typer.Argument(help="Alert id.", min=1)],
    json: JsonOpt = False,
) -> None:
    """Acknowledge an alert (audited)."""
    with client(ctx) as api:
        reply = api.acknowledge_alert(alert)
    if json:
        as_json(reply)
    else:
        note(f"alert {alert} acknowledged")


@devices_app.command("timeline")
def devices_timeline(ctx: typer.Context, device: DeviceArg, json: JsonOpt = False) -> None:
    """A device's timeline: reports, state changes, health reports, alerts."""
    with client(ctx) as api:
        items = api.timeline(device)
    if json:
        as_json(items)
    else:
        table(items, TIMELINE_COLUMNS, title=f"timeline of {device}")


@devices_app.command("accept")
def devices_accept(
    ctx: typer.Context,
    device: DeviceArg,
    reject: Annotated[bool, typer.Option("--reject", help="Refuse it updates instead.")] = False,
    json: JsonOpt = False,
) -> None:
    """Let a newly enrolled device receive updates (or, with --reject, refuse it)."""
    with client(ctx) as api:
        reply = api.set_acceptance(device, not reject)
    if json:
        as_json(reply)
    else:
        note(f"{device}: {'rejected' if reject else 'accepted'}")


@devices_app.command("decommission")
def devices_decommission(
    ctx: typer.Context,
    device: DeviceArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json: JsonOpt = False,
) -> None:
    """Take a device out of the fleet: no more offers, its certificates revoked."""
    if not yes and not typer.confirm(f"decommission {device}?", err=True):
        raise typer.Exit(code=1)
    with client(ctx) as api:
        reply = api.decommission(device)
    if json:
        as_json(reply)
    else:
        note(f"{device}: decommissioned")


def change_password(ctx: typer.Context) -> None:
    """Replace your own password (needed once after an administrator set or reset it)."""
    current = typer.prompt("current password", hide_input=True, err=True)
    new = typer.prompt("new password", hide_input=True, confirmation_prompt=True, err=True)
    with client(ctx) as api:
        api.change_own_password(current, new)
    note("password changed")
