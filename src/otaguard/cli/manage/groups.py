"""``otaguard mgmt groups``: device groups are tags; a group marked production makes every
deployment reaching it wait for an approver (two-person rule)."""

from __future__ import annotations

from typing import Annotated

import typer

from otaguard.cli.manage.output import as_json, note, table
from otaguard.cli.manage.runtime import JsonOpt, client

groups_app = typer.Typer(help="Device groups (tags) and production groups.", no_args_is_help=True)


@groups_app.command("list")
def groups_list(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Every tag in use with its device count, and which groups are production."""
    with client(ctx) as api:
        production = set(api.production_groups())
        tags = {t["tag"]: int(t["devices"]) for t in api.tags()}
    items = [
        {"tag": tag, "devices": tags.get(tag, 0), "production": tag in production}
        for tag in sorted(set(tags) | production)
    ]
    if json:
        as_json(items)
        return
    table(items, [("group (tag)", "tag"), ("devices", "devices"), ("production", "production")])


@groups_app.command("set")
def groups_set(
    ctx: typer.Context,
    tag: Annotated[str, typer.Argument(help="The tag (group).")],
    production: Annotated[
        bool,
        typer.Option(
            "--production/--no-production",
            help="Deployments reaching a production group need an approver.",
        ),
    ],
    json: JsonOpt = False,
) -> None:
    """Mark a group as production (or not)."""
    with client(ctx) as api:
        groups = api.set_production_group(tag, production)
    if json:
        as_json({"production": groups})
        return
    note(f"{tag}: {'production' if production else 'not production'}")
    note(f"production groups: {', '.join(groups) or '(none)'}")
