"""How the console shows times: absolute (UTC, ISO-like) and relative ("3 min ago"). Pure."""

from __future__ import annotations

import datetime as dt


def as_utc(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def absolute(when: dt.datetime | None) -> str:
    if when is None:
        return "never"
    return as_utc(when).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(span: dt.timedelta) -> str:
    """A span to its largest whole unit: "15 s", "3 min", "2 h", "1 d"."""
    seconds = int(abs(span.total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def relative(when: dt.datetime | None, now: dt.datetime) -> str:
    """``when`` from ``now``'s point of view, to the largest whole unit."""
    if when is None:
        return "never"
    span = as_utc(now) - as_utc(when)
    if abs(span.total_seconds()) < 5:
        return "just now"
    amount = duration(span)
    return f"in {amount}" if span.total_seconds() < 0 else f"{amount} ago"


def iso(when: dt.datetime | None) -> str:
    return "" if when is None else as_utc(when).isoformat()
