"""Maintenance windows: when a device says it may install, in its own local time.

A device (or its operator) declares windows such as ``Mon-Fri 01:00-05:00 Europe/Berlin`` or
``Sat,Sun 22:00-04:00 UTC+05:30``; several are joined by ``;``. The agent asks
``may_install(schedule, now)`` before it installs and the server may use ``next_opening`` to
tell when a device will act. Local wall-clock time is what people mean by "01:00 at night", so
IANA zones (stdlib ``zoneinfo``) follow daylight saving time; fixed offsets do not.

Grammar of one window: ``[DAYS] START-END [ZONE]``.

- DAYS: ``Mon``..``Sun`` (any case), ranges ``Mon-Fri`` (may wrap: ``Fri-Mon``), lists
  ``Mon,Wed,Fri``, or ``daily``; omitted means every day.
- START/END: ``HH:MM``; END may be ``24:00``. END before START crosses midnight and belongs to
  the day it starts on (``Fri 22:00-02:00`` is Friday night into Saturday).
- ZONE: an IANA name, ``UTC``, ``UTC+2``, ``UTC-05:30`` or ``+02:00``; omitted means UTC.

Pure: strings and aware datetimes in, a verdict out; no clock is read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from otaguard.errors import MaintenanceWindowError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_MINUTES_PER_DAY = 24 * 60
_TIMES = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)


@dataclass(frozen=True)
class Window:
    """Install allowed from ``start`` to ``end`` (minutes after local midnight, end exclusive;
    ``end < start`` crosses midnight) on ``days`` (0 = Monday) in ``zone``."""

    days: frozenset[int]
    start: int
    end: int
    zone: tzinfo

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        if self.start < self.end:
            return today in self.days and self.start <= minute < self.end
        yesterday = (today - 1) % 7
        return (today in self.days and minute >= self.start) or (
            yesterday in self.days and minute < self.end
        )


@dataclass(frozen=True)
class Schedule:
    """One or more windows; installing is allowed when any of them is open."""

    windows: tuple[Window, ...]
    spec: str


def parse_schedule(spec: str) -> Schedule:
    """Parse ``spec`` (see the module docstring).

    Raises:
        MaintenanceWindowError: every part that does not parse, listed in ``problems``.
    """
    windows: list[Window] = []
    problems: list[str] = []
    parts = [p.strip() for p in spec.split(";")]
    if not any(parts):
        raise MaintenanceWindowError("a maintenance window spec must not be empty")
    for part in parts:
        if not part:
            continue
        try:
            windows.append(_parse_window(part))
        except MaintenanceWindowError as exc:
            problems.append(f"{part!r}: {exc}")
    if problems:
        raise MaintenanceWindowError(
            "invalid maintenance window: " + "; ".join(problems), problems=tuple(problems)
        )
    return Schedule(tuple(windows), spec)


def _parse_window(text: str) -> Window:
    tokens = text.split()
    times_at = [i for i, t in enumerate(tokens) if _TIMES.match(t)]
    if len(times_at) != 1:
        raise MaintenanceWindowError("expected one START-END time range like 01:00-05:00")
    at = times_at[0]
    if at > 1 or len(tokens) - at > 2:
        raise MaintenanceWindowError("expected [DAYS] START-END [ZONE]")
    days = _parse_days(tokens[0]) if at == 1 else frozenset(range(7))
    start, end = _parse_times(tokens[at])
    zone = _parse_zone(tokens[at + 1]) if len(tokens) > at + 1 else UTC
    return Window(days, start, end, zone)


def _parse_days(text: str) -> frozenset[int]:
    if text.lower() in ("daily", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for item in text.lower().split(","):
        first, _, last = item.partition("-")
        a, b = _day(first), _day(last or first)
        days.update((a + k) % 7 for k in range((b - a) % 7 + 1))
    return frozenset(days)


def _day(name: str) -> int:
    for index, (short, full) in enumerate(zip(DAY_NAMES, _FULL_DAY_NAMES, strict=True)):
        if name in (short, full):
            return index
    raise MaintenanceWindowError(f"unknown day {name!r} (use Mon..Sun)")


def _parse_times(text: str) -> tuple[int, int]:
    match = _TIMES.match(text)
    assert match is not None  # the caller picked this token by the same pattern
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        raise MaintenanceWindowError(f"time out of range in {text!r}")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise MaintenanceWindowError(f"empty window {text!r} (use 00:00-24:00 for a whole day)")
    return start, end


def _parse_zone(text: str) -> tzinfo:
    if text.upper() in ("UTC", "Z"):
        return UTC
    match = _OFFSET.match(text)
    if match:
        sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if hours > 14 or minutes > 59:
            raise MaintenanceWindowError(f"UTC offset out of range: {text!r}")
        offset = timedelta(hours=hours, minutes=minutes)
        return timezone(-offset if sign == "-" else offset)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise MaintenanceWindowError(f"unknown time zone {text!r}") from None


def may_install(schedule: Schedule, now: datetime) -> bool:
    """Is any of the device's windows open at ``now`` (an aware datetime)?

    Raises:
        MaintenanceWindowError: ``now`` has no time zone (the answer would be a guess).
    """
    _require_aware(now)
    return any(w.is_open(now) for w in schedule.windows)


def next_opening(schedule: Schedule, now: datetime) -> datetime:
    """The first moment at or after ``now`` when a window is open (``now`` if one is)."""
    _require_aware(now)
    if may_install(schedule, now):
        return now
    candidates = []
    for window in schedule.windows:
        local_today = now.astimezone(window.zone).date()
        for offset in range(-1, 8):
            day = local_today + timedelta(days=offset)
            if day.weekday() in window.days:
                opening = _local(day, window.start, window.zone)
                if opening > now:
                    candidates.append(opening)
    # every window opens on some weekday within a week, so there is always a candidate
    return min(candidates)


def _local(day: date, minute: int, zone: tzinfo) -> datetime:
    """``day`` at ``minute`` wall-clock time in ``zone``. A wall time skipped by a DST change is
    read with the offset before the change (PEP 495, fold=0), i.e. shifted forward by the gap."""
    wall = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    return wall.astimezone(UTC)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise MaintenanceWindowError("the current time must carry a time zone")
