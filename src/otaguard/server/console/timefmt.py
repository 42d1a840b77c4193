"""How the console shows times: absolute (UTC, ISO-like) and relative ("3 min ago"). Pure."""

from __future__ import annotations

import datetime as dt


def as_utc(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def absolute(when: dt.datetime | None) -> str:
    if when is None:
        return "never"
    return as_utc(when).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def relative(when: dt.datetime | None, now: dt.datetime) -> str:
    """``when`` from ``now``'s point of view, to the largest whole unit."""
    if when is None:
        return "never"
    seconds = int((as_utc(now) - as_utc(when)).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            amount = f"{seconds // size} {unit}"
            break
    else:
        if seconds < 5:
            return "just now"
        amount = f"{seconds} s"
    return f"in {amount}" if future else f"{amount} ago"


def iso(when: dt.datetime | None) -> str:
    return "" if when is None else as_utc(when).isoformat()
