"""``otaguard mgmt devices``: find devices, read their history and certificates, tag them,
register them, and hand out or take back their credentials."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from otaguard.cli.manage.output import as_json, fields, note, page_note, table
from otaguard.cli.manage.runtime import JsonOpt, LimitOpt, OffsetOpt, client, fail
from otaguard.cli.manage.secrets import emit_secret
from otaguard.fleet.status import DeviceState

devices_app = typer.Typer(help="Devices: list, inspect, tag, certificates.", no_args_is_help=True)

DeviceArg = Annotated[str, typer.Argument(help="Device id.", metavar="DEVICE")]
OutOpt = Annotated[
    Path | None, typer.Option("--out", "-o", help="Write the secret to this file (0600).")
]

DEVICE_COLUMNS = [
    ("device", "id"),
    ("hardware", "hardware"),
    ("version", "current_version"),
    ("state", "update_state"),
    ("tags", "tags"),
    ("last seen", "last_seen"),
]
EVENT_COLUMNS = [
    ("id", "id"),
    ("at", "created_at"),
    ("event", "event"),
    ("version", "version"),
    ("deployment", "deployment_id"),
    ("detail", "detail"),
]


@devices_app.command("list")
def devices_list(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="Only devices with this tag.")] = None,
    hardware: Annotated[str | None, typer.Option(help="Only this hardware.")] = None,
    version: Annotated[str | None, typer.Option(help="Only devices running it.")] = None,
    state: Annotated[
        DeviceState | None, typer.Option(help="Only devices whose last report is this.")
    ] = None,
    limit: LimitOpt = 100,
    offset: OffsetOpt = 0,
    json: JsonOpt = False,
) -> None:
    """Devices matching every filter given, by id, one page at a time."""
    with client(ctx) as api:
        page = api.devices(
            tag=tag, hardware=hardware, version=version, state=state, limit=limit, offset=offset
        )
    if json:
        as_json(page)
        return
    table(page["items"], DEVICE_COLUMNS)
    page_note(page)


@devices_app.command("show")
def devices_show(
    ctx: typer.Context,
    device: DeviceArg,
    events: Annotated[int, typer.Option(min=0, max=200, help="Latest events shown.")] = 10,
    json: JsonOpt = False,
) -> None:
    """One device: what it runs, where it stands, and its latest events."""
    with client(ctx) as api:
        d = api.device(device)
    if json:
        as_json(d)
        return
    fields(
        d,
        [
            *DEVICE_COLUMNS,
            ("slot", "active_slot"),
            ("security version", "security_version"),
            ("agent", "agent_version"),
        ],
        title=f"device {device}",
    )
    if events and d["events"]:
        table(d["events"][-events:], EVENT_COLUMNS, title="latest events (oldest first)")


@devices_app.command("events")
def devices_events(
    ctx: typer.Context,
    device: DeviceArg,
    limit: LimitOpt = 100,
    before: Annotated[
        int | None, typer.Option(min=1, help="Events older than this event id.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """The device's status history, newest page first; page back with ``--before``."""
    with client(ctx) as api:
        page = api.device_events(device, limit=limit, before=before)
    if json:
        as_json(page)
        return
    table(page["items"], EVENT_COLUMNS, title=f"events of {device} (oldest first)")
    if page["next_before"] is not None:
        note(f"older events: --before {page['next_before']}")


def new_tags(current: list[str], *, add: list[str], remove: list[str], clear: bool) -> list[str]:
    """The tag list after ``--clear``, ``--add`` and ``--remove`` (in that order)."""
    tags = [] if clear else list(current)
    tags += [t for t in add if t not in tags]
    return [t for t in tags if t not in remove]


@devices_app.command("tag")
def devices_tag(
    ctx: typer.Context,
    device: DeviceArg,
    add: Annotated[list[str] | None, typer.Option("--add", "-a", help="Add a tag.")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", "-r", help="Drop a tag.")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Start from no tags.")] = False,
    json: JsonOpt = False,
) -> None:
    """Change a device's tags (its groups: deployments select devices by tag)."""
    if not (add or remove or clear):
        fail("nothing to change: --add, --remove or --clear")
    with client(ctx) as api:
        current = api.device(device)["tags"]
        tags = new_tags(current, add=add or [], remove=remove or [], clear=clear)
        d = api.set_device_tags(device, tags)
    if json:
        as_json(d)
        return
    note(f"{device}: tags {', '.join(d['tags']) or '(none)'}")


@devices_app.command("certificates")
def devices_certificates(ctx: typer.Context, device: DeviceArg, json: JsonOpt = False) -> None:
    """Client certificates issued to the device, revoked or not."""
    with client(ctx) as api:
        certs = api.device_certificates(device)
    if json:
        as_json(certs)
        return
    cols = [("serial", "serial"), ("hardware", "hardware"), ("not after", "not_after")]
    table(certs, [*cols, ("revoked", "revoked_at")], title=f"certificates of {device}")


@devices_app.command("revoke-certificates")
def devices_revoke_certificates(
    ctx: typer.Context,
    device: DeviceArg,
    serial: Annotated[
        str | None, typer.Option("--serial", help="Only this certificate of the device.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json: JsonOpt = False,
) -> None:
    """Revoke the device's certificates (or one): it is refused until it enrolls again."""
    what = f"certificate {serial} of {device}" if serial else f"every certificate of {device}"
    with client(ctx) as api:
        if serial is not None and serial not in {
            c["serial"] for c in api.device_certificates(device)
        }:
            fail(f"{device} has no certificate {serial}")
        if not yes and not typer.confirm(f"revoke {what}?", err=True):
            fail("not confirmed")
        if serial is None:
            reply = api.revoke_device_certificates(device)
        else:
            reply = api.revoke_certificate(serial)
    if json:
        as_json(reply)
        return
    revoked = reply.get("revoked", [serial] if reply.get("newly_revoked") else [])
    note(f"{device}: revoked {', '.join(revoked) or 'nothing new'}")


@devices_app.command("enrollment-token")
def devices_enrollment_token(
    ctx: typer.Context,
    device: DeviceArg,
    ttl: Annotated[int, typer.Option("--ttl", min=60, max=30 * 86400, help="Seconds.")] = 86400,
    out: OutOpt = None,
) -> None:
    """A one-time token with which the device enrolls its own key (printed once, or --out)."""
    with client(ctx) as api:
        reply = api.enrollment_token_reply(device, ttl)
        emit_secret(reply["token"], out, f"enrollment token for {device}, valid {ttl} s")


@devices_app.command("register")
def devices_register(
    ctx: typer.Context,
    device: DeviceArg,
    hardware: Annotated[str, typer.Option("--hardware", help="Hardware model.")],
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="A tag.")] = None,
    manifest_key: Annotated[
        Path | None,
        typer.Option("--manifest-key", help="Public key JSON the device signs manifests with."),
    ] = None,
    out: OutOpt = None,
) -> None:
    """Register a device; its bearer credential is printed once (or written to --out)."""
    with client(ctx) as api:
        key = jsonlib.loads(manifest_key.read_text()) if manifest_key else None
        credential = api.register_device(device, hardware, tag or [], manifest_key=key)
        emit_secret(credential, out, f"device {device} registered; its credential")
