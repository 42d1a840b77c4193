"""When the device may install: its maintenance windows, as a pure decision.

A device's config may say when installing (switching the boot environment to the new slot)
and rebooting into it are allowed, e.g. ``maintenance_windows = ["Mon-Fri 02:00-04:00
Europe/Berlin"]`` (the grammar is ``fleet/windows.py``'s). Outside every window the agent still
checks in, verifies the assignment, downloads and verifies the image (none of which disturbs
the device), then waits in ``installing`` and tells the server ``waiting: maintenance window
...`` once per opening it waits for. No windows configured: installing is always allowed.

Pure: the parsed schedule and an aware ``now`` in, a verdict out; no clock is read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from otaguard.errors import ConfigError, MaintenanceWindowError
from otaguard.fleet.windows import Schedule, may_install, next_opening, parse_schedule

WAITING_PREFIX = "maintenance window"


@dataclass(frozen=True)
class InstallGate:
    """``open``: install now; else ``reason`` (what the server is told) and ``opens_at``."""

    open: bool
    reason: str = ""
    opens_at: datetime | None = None


def install_gate(schedule: Schedule | None, now: datetime) -> InstallGate:
    """May the device install (or reboot into a new image) at ``now``?"""
    if schedule is None or may_install(schedule, now):
        return InstallGate(True)
    opens = next_opening(schedule, now)
    reason = (
        f"{WAITING_PREFIX} closed ({schedule.spec}); installs at the next opening, "
        f"{opens.isoformat(timespec='minutes')}"
    )
    return InstallGate(False, reason, opens)


def parse_windows(key: str, value: object) -> Schedule | None:
    """The schedule of a config's ``maintenance_windows`` (a list of window strings, or one
    string; empty: no restriction).

    Raises:
        ConfigError: naming ``key`` and every window that does not parse.
    """
    if isinstance(value, str):
        items: Sequence[object] = [value]
    elif isinstance(value, list | tuple):
        items = value
    else:
        raise ConfigError(
            f'{key}: expected a list of windows such as ["Mon-Fri 02:00-04:00 Europe/Berlin"], '
            f"not {value!r}"
        )
    if not all(isinstance(v, str) and v.strip() for v in items):
        raise ConfigError(f"{key}: every window must be a non-empty string, not {list(items)!r}")
    if not items:
        return None
    try:
        return parse_schedule("; ".join(str(v) for v in items))
    except MaintenanceWindowError as exc:
        raise ConfigError(f"{key}: {exc}") from exc
