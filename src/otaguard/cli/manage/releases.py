"""``otaguard mgmt releases``: the signed releases the server publishes. Releases are made and
signed offline (``otaguard release add|sign``, ``otaguard repo publish``); here they are read."""

from __future__ import annotations

from typing import Annotated

import typer

from otaguard.cli.manage.output import as_json, fields, table
from otaguard.cli.manage.runtime import JsonOpt, client

releases_app = typer.Typer(help="Published releases (read only).", no_args_is_help=True)

RELEASE_COLUMNS = [
    ("target", "target_name"),
    ("version", "version"),
    ("hardware", "hardware"),
    ("security version", "security_version"),
    ("bytes", "length"),
]


@releases_app.command("list")
def releases_list(
    ctx: typer.Context,
    hardware: Annotated[str | None, typer.Option(help="Only releases for this hardware.")] = None,
    json: JsonOpt = False,
) -> None:
    """Every published release (signed targets), oldest first."""
    with client(ctx) as api:
        items = api.releases()
    if hardware is not None:
        items = [r for r in items if hardware in r["hardware"]]
    if json:
        as_json(items)
        return
    table(items, RELEASE_COLUMNS)


@releases_app.command("show")
def releases_show(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(help="Target name, e.g. board/firmware-2.0.0.img")],
    json: JsonOpt = False,
) -> None:
    """One release: version, hardware, security version, digest and signed custom fields."""
    with client(ctx) as api:
        r = api.release(target)
    if json:
        as_json(r)
        return
    custom = [(f"custom.{k}", f"custom.{k}") for k in sorted(r.get("custom", {}))]
    fields(r, [*RELEASE_COLUMNS, ("sha256", "sha256"), *custom], title=f"release {target}")
