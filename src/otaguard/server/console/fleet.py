"""The fleet at a glance, as counts: pure rules over plain values.

How recently a device was heard from is judged against the server's poll interval: a device
that checked in within a few polls is *online*, one heard from today is *stale*, anything older
(or never) is *silent*. The counts come from one grouped query (``fleet_query.py``) and are
folded here into the overview's facets.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

#: polls a device may miss and still count as online
ONLINE_POLLS = 3
STALE_AFTER = dt.timedelta(days=1)
#: how many values a facet shows before the rest are summed as "other"
FACET_LIMIT = 8


class Contact(StrEnum):
    ONLINE = "online"
    STALE = "stale"
    SILENT = "silent"


@dataclass(frozen=True)
class ContactCuts:
    """Devices seen at or after ``online`` are online; at or after ``stale``, stale."""

    online: dt.datetime
    stale: dt.datetime

    @classmethod
    def at(cls, now: dt.datetime, poll_interval_seconds: int) -> ContactCuts:
        return cls(
            online=now - dt.timedelta(seconds=ONLINE_POLLS * max(1, poll_interval_seconds)),
            stale=now - STALE_AFTER,
        )

    def contact(self, last_seen: dt.datetime | None) -> Contact:
        if last_seen is None or last_seen < self.stale:
            return Contact.SILENT
        return Contact.ONLINE if last_seen >= self.online else Contact.STALE


@dataclass(frozen=True)
class GroupRow:
    """One row of the grouped query: how many devices share these four values."""

    version: str | None
    hardware: str
    state: str
    contact: str
    count: int


@dataclass(frozen=True)
class FleetSummary:
    total: int
    by_version: list[tuple[str, int]]
    by_hardware: list[tuple[str, int]]
    by_state: list[tuple[str, int]]
    by_contact: list[tuple[str, int]]


def top(counter: Counter[str], limit: int = FACET_LIMIT) -> list[tuple[str, int]]:
    """The ``limit`` largest values (ties by name), the rest summed as ``other``."""
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    head, rest = ranked[:limit], ranked[limit:]
    if rest:
        head.append((f"{len(rest)} others", sum(n for _, n in rest)))
    return head


def summarize(rows: Iterable[GroupRow]) -> FleetSummary:
    versions: Counter[str] = Counter()
    hardware: Counter[str] = Counter()
    states: Counter[str] = Counter()
    contacts: Counter[str] = Counter({c.value: 0 for c in Contact})
    for r in rows:
        versions[r.version or "unknown"] += r.count
        hardware[r.hardware] += r.count
        states[r.state] += r.count
        contacts[r.contact] += r.count
    return FleetSummary(
        total=sum(hardware.values()),
        by_version=top(versions),
        by_hardware=top(hardware),
        by_state=top(states),
        by_contact=[(c.value, contacts[c.value]) for c in Contact],
    )
