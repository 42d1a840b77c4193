"""What the device tells the server's health gate, and when: pure decisions.

The server holds a rollout at its health gate (``fleet/health.py``) when devices on the new
release are worse off than a **control cohort** still on the old one, hardware type by hardware
type. So two kinds of device report the same signals to ``POST /device/v1/health``:

- after a committed update, every ``health_report_interval`` for ``health_report_window``
  (the first one at the first poll after the commit): the updated cohort;
- otherwise every ``health_baseline_interval`` (0: never): the control cohort (the server
  compares reports from the day before a deployment on).

The signals (``HealthSample``): boot time (seconds from power-on to the agent, as the device
measured it), restarts (boots of the device in the trailing report window, not counting the
boot that brought the update in), the custom health check's result, and optional numeric
metrics (from the device maker's probe command). The server's bounds are applied here too
(16 metrics, names of 1-64 ``[A-Za-z0-9_.:-]``), so a report is never refused for its shape.

Pure: times are plain epoch seconds handed in; the state is an immutable value the I/O layer
(``agent/health_reporter.py``) keeps in a small file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

MAX_METRICS = 16
MAX_BOOTS_KEPT = 64
MAX_BOOT_SECONDS = 86_400.0
_METRIC = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class ReportKind(StrEnum):
    AFTER_UPDATE = "after_update"
    BASELINE = "baseline"


@dataclass(frozen=True)
class HealthSample:
    """One reading of the device's health (``None``: not measured)."""

    boot_seconds: float | None = None
    restarts: int | None = None
    check_passed: bool | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


#: gathers a reading (I/O: runs the probe command, reads the clock...); fields left ``None``
#: are filled by the agent from what it knows (boot time, restarts, its health check)
HealthProbe = Callable[[], HealthSample]


@dataclass(frozen=True)
class ReportSchedule:
    window: float  # seconds of after-update reports (0: none)
    interval: float  # between after-update reports
    baseline_interval: float  # between reports otherwise (0: none)


@dataclass(frozen=True)
class ReportState:
    """What the schedule needs to remember (kept across reboots)."""

    committed_version: str | None = None
    committed_at: float | None = None
    last_sent_at: float | None = None
    boots: tuple[float, ...] = ()  # when the device booted, newest last

    def to_json(self) -> dict[str, Any]:
        return {
            "committed_version": self.committed_version,
            "committed_at": self.committed_at,
            "last_sent_at": self.last_sent_at,
            "boots": list(self.boots),
        }

    @classmethod
    def from_json(cls, data: Any) -> ReportState:
        """The state from its file's JSON; anything malformed starts afresh (an extra or a
        missed report is all a lost state costs)."""
        if not isinstance(data, dict):
            return cls()
        version = data.get("committed_version")
        boots = data.get("boots")
        return cls(
            committed_version=version if isinstance(version, str) else None,
            committed_at=_number(data.get("committed_at")),
            last_sent_at=_number(data.get("last_sent_at")),
            boots=tuple(b for b in boots if _number(b) is not None)[-MAX_BOOTS_KEPT:]
            if isinstance(boots, list)
            else (),
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def in_window(schedule: ReportSchedule, state: ReportState, now: float) -> bool:
    """Is ``now`` within the after-update window of the last committed update?"""
    at = state.committed_at
    return schedule.window > 0 and at is not None and 0 <= now - at < schedule.window


def report_due(schedule: ReportSchedule, state: ReportState, now: float) -> ReportKind | None:
    """Which report is due at ``now``, if any. A clock that went backwards since the last
    report makes one due (better one report too many than silence)."""
    last = state.last_sent_at
    if in_window(schedule, state, now):
        assert state.committed_at is not None
        if last is None or last < state.committed_at or last > now:
            return ReportKind.AFTER_UPDATE
        return ReportKind.AFTER_UPDATE if now - last >= schedule.interval else None
    if schedule.baseline_interval <= 0:
        return None
    if last is None or last > now or now - last >= schedule.baseline_interval:
        return ReportKind.BASELINE
    return None


def seconds_until_due(schedule: ReportSchedule, state: ReportState, now: float) -> float | None:
    """Seconds from ``now`` until the next report falls due (0: due now), or None when none
    ever will (reports off). Lets a device that polls rarely wake up for its reports."""
    if report_due(schedule, state, now) is not None:
        return 0.0
    last = state.last_sent_at
    if last is None:  # not due with nothing sent: baselines are off and no window is open
        return None
    if in_window(schedule, state, now):
        assert state.committed_at is not None
        if last + schedule.interval < state.committed_at + schedule.window:
            return last + schedule.interval - now
    if schedule.baseline_interval <= 0:
        return None
    return last + schedule.baseline_interval - now


def after_boot(state: ReportState, now: float) -> ReportState:
    return replace(state, boots=(*state.boots, now)[-MAX_BOOTS_KEPT:])


def after_commit(state: ReportState, version: str | None, now: float) -> ReportState:
    """An update was committed at ``now``: its window starts."""
    return replace(state, committed_version=version, committed_at=now)


def after_sent(state: ReportState, now: float) -> ReportState:
    return replace(state, last_sent_at=now)


def restarts(schedule: ReportSchedule, state: ReportState, now: float) -> int:
    """Boots in the trailing report window (the same length for both cohorts), after the
    commit when in the after-update window (the boot into the new image is not a restart)."""
    since = now - max(schedule.window, schedule.interval)
    if in_window(schedule, state, now) and state.committed_at is not None:
        since = max(since, state.committed_at)
    return sum(1 for b in state.boots if since < b <= now)


def report_body(sample: HealthSample, version: str | None) -> dict[str, Any]:
    """The ``POST /device/v1/health`` body, within the server's bounds (values out of range or
    not finite, and metric names it would refuse, are left out)."""
    body: dict[str, Any] = {"version": version}
    boot = sample.boot_seconds
    if boot is not None and math.isfinite(boot) and 0 <= boot <= MAX_BOOT_SECONDS:
        body["boot_seconds"] = round(float(boot), 3)
    if sample.restarts is not None and 0 <= sample.restarts <= 1_000_000:
        body["restarts"] = int(sample.restarts)
    if sample.check_passed is not None:
        body["check_passed"] = bool(sample.check_passed)
    metrics = {
        name: float(value)
        for name, value in sorted(sample.metrics.items())
        if _METRIC.match(name) and _number(value) is not None and abs(value) <= 1e12
    }
    body["metrics"] = dict(list(metrics.items())[:MAX_METRICS])
    return body


def parse_probe_output(text: str) -> HealthSample:
    """A probe command's output: a JSON object with ``boot_seconds``, ``restarts``,
    ``check_passed`` (all optional) and any other numbers as metrics. Not JSON, or not an
    object: an empty sample (the agent's own readings still go out)."""
    try:
        data = json.loads(text)
    except ValueError:
        return HealthSample()
    if not isinstance(data, dict):
        return HealthSample()
    boot = _number(data.pop("boot_seconds", None))
    count = data.pop("restarts", None)
    passed = data.pop("check_passed", None)
    return HealthSample(
        boot_seconds=boot,
        restarts=count if isinstance(count, int) and not isinstance(count, bool) else None,
        check_passed=passed if isinstance(passed, bool) else None,
        metrics={k: v for k, v in data.items() if _number(v) is not None},
    )
