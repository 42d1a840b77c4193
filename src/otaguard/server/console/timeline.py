"""A device's timeline as the console shows it: its status reports (check-in results, installs,
rollbacks, each with the reason it gave) merged with what ``Monitoring.timeline`` adds
(health reports, alerts about the device, its last check-in), newest first. Pure.

Reports page back by id (``?before=``); the other items carry only a time, so a page shows
those from its oldest report's time up to (not including) the time of the previous page's
oldest report: all the newer ones on the first page, all the older ones on the last, and none
shown twice or lost.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from otaguard.server.console.timefmt import as_utc
from otaguard.store.views import EventView

#: kinds of ``Monitoring.timeline`` items taken from it (its "report" items are the events)
EXTRA_KINDS = ("health", "alert", "checkin")


@dataclass(frozen=True)
class Entry:
    at: dt.datetime
    kind: str  # "report", "health", "alert", "checkin"
    badge: str  # the badge shown: the reported event, or the kind
    text: str = ""
    version: str | None = None
    slot: str | None = None
    deployment_id: int | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    link: str | None = None


def _extra(item: Mapping[str, Any]) -> Entry:
    kind = str(item["kind"])
    detail = {k: v for k, v in dict(item.get("detail") or {}).items() if v is not None}
    link = None
    if kind == "alert":
        link = "/console/alerts?show=all"
        detail.pop("alert_id", None)
    return Entry(
        at=as_utc(item["at"]),
        kind=kind,
        badge="check_in" if kind == "checkin" else kind,
        text=str(item.get("summary", "")),
        version=detail.pop("version", None),
        detail=detail,
        link=link,
    )


def _report(e: EventView) -> Entry:
    return Entry(
        at=as_utc(e.created_at),
        kind="report",
        badge=e.event,
        version=e.version,
        slot=e.slot,
        deployment_id=e.deployment_id,
        detail=e.detail,
    )


def merge(
    events: Sequence[EventView],
    extras: Iterable[Mapping[str, Any]],
    *,
    upper: dt.datetime | None,
    oldest: bool,
) -> list[Entry]:
    """``events``: one page of reports, newest first. ``upper``: when the previous (newer)
    page's oldest report was made (None on the first page); ``oldest``: no older report
    exists, so every older item belongs here."""
    entries = [_report(e) for e in events]
    upper = None if upper is None else as_utc(upper)
    lower = None if oldest or not entries else entries[-1].at
    for item in extras:
        if item.get("kind") not in EXTRA_KINDS:
            continue
        extra = _extra(item)
        if upper is not None and extra.at >= upper:
            continue
        if lower is not None and extra.at < lower:
            continue
        entries.append(extra)
    entries.sort(key=lambda x: x.at, reverse=True)  # stable: reports keep their order
    return entries
