"""``otaguard mgmt dynamic-groups``: saved dynamic groups, named filters over what devices
report (hardware, version, agent version, security version, slot, update state, tags).

Conditions are written ``--where 'ATTRIBUTE OP VALUE'``: ``version<2.0``, ``hardware=sim-board``,
``tag has eu``, ``tag has-any eu,us``, ``slot exists`` / ``slot missing``, ``hardware^=sim-``
(prefix), ``update_state in failed,rolled_back``; or a whole filter as JSON with ``--filter``.
A deployment uses a group with ``otaguard mgmt deployments create NAME -r REL --group GROUP``
(its members at that moment: the group is evaluated once).
"""

from __future__ import annotations

import json as jsonlib
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from otaguard.cli.manage.devices import DEVICE_COLUMNS
from otaguard.cli.manage.output import as_json, fields, note, page_note, table
from otaguard.cli.manage.runtime import JsonOpt, LimitOpt, OffsetOpt, client, fail
from otaguard.fleet.groups import ATTRIBUTES, Kind

dynamic_groups_app = typer.Typer(
    help="Saved dynamic groups: named filters over what devices report.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The group's name.")]
WhereOpt = Annotated[
    list[str] | None,
    typer.Option("--where", "-w", help="A condition, e.g. 'version<2.0' or 'tag has eu' (repeat)."),
]
AnyOpt = Annotated[bool, typer.Option("--any", help="Any condition (default: all of them).")]
FilterOpt = Annotated[
    Path | None, typer.Option("--filter", help="The whole filter as a JSON file instead.")
]
DescriptionOpt = Annotated[str, typer.Option("--description", help="What the group is for.")]
GROUP_COLUMNS = [("name", "name"), ("filter", "summary"), ("description", "description")]

_SYMBOLS = {"=": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "^=": "prefix"}
_SYMBOLIC = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|!=|\^=|=|<|>)\s*(.+?)\s*$")
_WORDS = re.compile(r"^\s*([a-z_]+)\s+(not-in|in|has-any|has-all|has-none|has)\s+(.+?)\s*$")
_PRESENCE = re.compile(r"^\s*([a-z_]+)\s+(exists|missing)\s*$")


def parse_where(text: str) -> dict[str, Any]:
    """One condition of the API's filter from ``ATTRIBUTE OP VALUE``; lists are comma
    separated, ``security_version`` values are whole numbers. What the condition means is the
    server's to judge; this only writes it down.

    Raises:
        ValueError: the text has no operator, or a number is not one.
    """
    if m := _PRESENCE.match(text):
        return {"attribute": m.group(1), "op": "exists", "value": m.group(2) == "exists"}
    if m := _WORDS.match(text):
        attribute, op = m.group(1), m.group(2).replace("-", "_")
        values = [_typed(attribute, v.strip()) for v in m.group(3).split(",") if v.strip()]
        value: Any = values[0] if op == "has" and len(values) == 1 else values
        return {"attribute": attribute, "op": op, "value": value}
    if m := _SYMBOLIC.match(text):
        attribute = m.group(1)
        return {
            "attribute": attribute,
            "op": _SYMBOLS[m.group(2)],
            "value": _typed(attribute, m.group(3)),
        }
    raise ValueError(
        f"--where {text!r}: expected ATTRIBUTE OP VALUE, e.g. 'version<2.0', 'tag has eu', "
        "'slot exists'"
    )


def _typed(attribute: str, value: str) -> str | int:
    if ATTRIBUTES.get(attribute) is Kind.INTEGER:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{attribute}: {value!r} is not a whole number") from None
    return value


def filter_of(where: list[str], any_of: bool, path: Path | None) -> dict[str, Any]:
    """The API's filter from ``--where`` conditions or a ``--filter`` JSON file (one way)."""
    if bool(where) == (path is not None):
        raise ValueError("give the conditions one way: --where (repeat) or --filter FILE")
    if path is not None:
        data = jsonlib.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a filter is a JSON object")
        return data
    return {"match": "any" if any_of else "all", "conditions": [parse_where(w) for w in where]}


def _filter_or_fail(where: list[str] | None, any_of: bool, path: Path | None) -> dict[str, Any]:
    try:
        return filter_of(where or [], any_of, path)
    except (ValueError, OSError) as exc:
        fail(str(exc))


@dynamic_groups_app.command("list")
def groups_list(
    ctx: typer.Context, limit: LimitOpt = 100, offset: OffsetOpt = 0, json: JsonOpt = False
) -> None:
    """Saved groups by name, with their filters."""
    with client(ctx) as api:
        page = api.dynamic_groups(limit=limit, offset=offset)
    if json:
        as_json(page)
        return
    table(page["items"], GROUP_COLUMNS)
    page_note(page)


@dynamic_groups_app.command("show")
def groups_show(ctx: typer.Context, name: NameArg, json: JsonOpt = False) -> None:
    """One group: its filter, who made and last changed it."""
    with client(ctx) as api:
        group = api.dynamic_group(name)
    if json:
        as_json(group)
        return
    keys = [*GROUP_COLUMNS, ("created by", "created_by"), ("updated by", "updated_by")]
    fields(group, [*keys, ("updated", "updated_at")], title=f"group {name}")


@dynamic_groups_app.command("create")
def groups_create(
    ctx: typer.Context,
    name: NameArg,
    where: WhereOpt = None,
    any_of: AnyOpt = False,
    filter_file: FilterOpt = None,
    description: DescriptionOpt = "",
    json: JsonOpt = False,
) -> None:
    """Save a named filter; ``members`` shows who belongs to it now."""
    group_filter = _filter_or_fail(where, any_of, filter_file)
    with client(ctx) as api:
        group = api.create_dynamic_group(name, group_filter, description)
    if json:
        as_json(group)
        return
    note(f"group {name} saved: {group['summary']}")


@dynamic_groups_app.command("update")
def groups_update(
    ctx: typer.Context,
    name: NameArg,
    where: WhereOpt = None,
    any_of: AnyOpt = False,
    filter_file: FilterOpt = None,
    description: DescriptionOpt = "",
    json: JsonOpt = False,
) -> None:
    """Replace a group's filter (deployments already made from it keep their devices)."""
    group_filter = _filter_or_fail(where, any_of, filter_file)
    with client(ctx) as api:
        group = api.update_dynamic_group(name, group_filter, description)
    if json:
        as_json(group)
        return
    note(f"group {name} now: {group['summary']}")


@dynamic_groups_app.command("delete")
def groups_delete(
    ctx: typer.Context,
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Forget a group (deployments made from it keep their devices)."""
    if not yes and not typer.confirm(f"delete group {name}?", err=True):
        fail("not confirmed")
    with client(ctx) as api:
        api.delete_dynamic_group(name)
    note(f"group {name} deleted")


@dynamic_groups_app.command("members")
def groups_members(
    ctx: typer.Context,
    name: NameArg,
    limit: LimitOpt = 100,
    offset: OffsetOpt = 0,
    json: JsonOpt = False,
) -> None:
    """The devices that belong to the group now (what a deployment made now would select)."""
    with client(ctx) as api:
        page = api.dynamic_group_devices(name, limit=limit, offset=offset)
    if json:
        as_json(page)
        return
    table(page["items"], DEVICE_COLUMNS, title=f"members of {name}")
    page_note(page)
