"""Tables for people, JSON for programs.

Every ``otaguard mgmt`` command prints the server's reply either as a rich table of chosen
columns (the default) or, with ``--json``, exactly as the server sent it, so scripts get every
field. ``cell`` and ``rows`` are pure (values in, strings out) and tested as such.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

#: standard output (tables, JSON); messages go to ``err``
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Column = tuple[str, str]  # (heading, key; "a.b" reaches into a nested mapping)


def cell(value: Any, *, now: dt.datetime | None = None) -> str:
    """One value as table text: lists joined, empty as "-", timestamps with their age."""
    if value is None or value == "" or value == []:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    if isinstance(value, str) and (when := _timestamp(value)) is not None:
        return f"{value[:19].replace('T', ' ')} ({age(when, now)})"
    return str(value)


def _timestamp(text: str) -> dt.datetime | None:
    if len(text) < 19 or text[4] != "-" or text[10] != "T":
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def age(when: dt.datetime, now: dt.datetime | None = None) -> str:
    """How long ago (or from now) ``when`` is, in its largest whole unit."""
    seconds = int(((now or dt.datetime.now(dt.UTC)) - when).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            text = f"{seconds // size}{unit}"
            break
    else:
        text = f"{seconds}s"
    return f"in {text}" if future else f"{text} ago"


def pick(item: Mapping[str, Any], key: str) -> Any:
    value: Any = item
    for part in key.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def rows(items: Iterable[Mapping[str, Any]], columns: Sequence[Column]) -> list[list[str]]:
    return [[cell(pick(item, key)) for _, key in columns] for item in items]


def table(
    items: Iterable[Mapping[str, Any]], columns: Sequence[Column], title: str | None = None
) -> None:
    """A table of ``items``, or a note saying there are none."""
    items = list(items)
    if not items:
        note(f"{title}: none" if title else "none")
        return
    t = Table(title=title, title_justify="left")
    for heading, _ in columns:
        t.add_column(heading, overflow="fold")
    for row in rows(items, columns):
        t.add_row(*row)
    out.print(t)


def fields(item: Mapping[str, Any], keys: Sequence[Column], title: str | None = None) -> None:
    """One object as a two-column table of field and value."""
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for heading, key in keys:
        t.add_row(heading, cell(pick(item, key)))
    out.print(t)


def as_json(data: Any, *, one_line: bool = False) -> None:
    """The reply as it came, on standard output, for programs (no colour, no wrapping);
    ``one_line``: a JSON Lines record, for a stream of replies."""
    indent = None if one_line else 2
    print(json.dumps(data, indent=indent, sort_keys=True, default=str), flush=True)


def note(message: str) -> None:
    """A human note on standard error (so ``--json`` output stays pure)."""
    err.print(message, highlight=False)


def page_note(page: Mapping[str, Any]) -> None:
    """ "Showing a..b of N" under a paged table, with how to get the next page."""
    total, offset, n = int(page["total"]), int(page["offset"]), len(page["items"])
    if n == 0:
        note(f"nothing here (total {total})")
        return
    more = f"; next page: --offset {offset + n}" if offset + n < total else ""
    note(f"{offset + 1}-{offset + n} of {total}{more}")
