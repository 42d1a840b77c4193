"""The agent's health reports to the server, the I/O around ``agent/health_reports.py``.

``HealthReporter`` keeps the schedule's state in ``state_dir/health.json`` (written whole and
renamed into place), notes boots and commits, and when a report is due gathers a reading (the
device's probe, then the agent's own: uptime at start for the boot time, counted boots for
restarts, the configured health check) and posts it. A report that cannot be sent is due
again at the next poll; nothing here ever fails an update cycle.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from otaguard.agent.config import AgentConfig
from otaguard.agent.health_reports import (
    HealthProbe,
    HealthSample,
    ReportKind,
    ReportSchedule,
    ReportState,
    after_boot,
    after_commit,
    after_sent,
    parse_probe_output,
    report_body,
    report_due,
    restarts,
    seconds_until_due,
)

log = logging.getLogger(__name__)

STATE_FILE = "health.json"


def uptime_seconds() -> float | None:
    """Seconds since the kernel booted (Linux), or None where that is unknown."""
    try:
        return float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def command_probe(command: list[str], timeout: float) -> HealthProbe:
    """The device maker's probe: a command printing a JSON object (``boot_seconds``,
    ``restarts``, ``check_passed``, metrics). No command, or one that fails: empty readings."""

    def probe() -> HealthSample:
        if not command:
            return HealthSample()
        try:
            proc = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("health probe failed to run: %s", exc)
            return HealthSample()
        if proc.returncode != 0:
            log.warning("health probe exited with %d", proc.returncode)
            return HealthSample()
        return parse_probe_output(proc.stdout.decode(errors="replace"))

    return probe


class HealthReporter:
    def __init__(
        self,
        config: AgentConfig,
        *,
        probe: HealthProbe | None,
        check: Callable[[], bool | None],
        send: Callable[[dict[str, object]], bool],
        wall_clock: Callable[[], dt.datetime],
    ) -> None:
        self.path = config.state_dir / STATE_FILE
        self.schedule = ReportSchedule(
            config.health_report_window,
            config.health_report_interval,
            config.health_baseline_interval,
        )
        self.probe = probe or command_probe(config.health_probe_command, config.health_timeout)
        self.check = check
        self.send = send
        self.wall_clock = wall_clock
        self.boot_seconds = uptime_seconds()  # the agent starts at the end of a boot
        self.state = self.load()

    def now(self) -> float:
        return self.wall_clock().timestamp()

    def load(self) -> ReportState:
        try:
            return ReportState.from_json(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return ReportState()

    def save(self, state: ReportState) -> None:
        self.state = state
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(state.to_json()))
            os.replace(tmp, self.path)
        except OSError as exc:  # a lost state costs one report too many or too few
            log.warning("health report state not saved: %s", exc)

    def booted(self) -> None:
        self.save(after_boot(self.state, self.now()))

    def committed(self, version: str | None) -> None:
        self.save(after_commit(self.state, version, self.now()))

    def seconds_until_due(self) -> float | None:
        """Seconds until the next report falls due (0: now; None: reports are off)."""
        return seconds_until_due(self.schedule, self.state, self.now())

    def maybe_report(self, version: str | None) -> ReportKind | None:
        """Send the report that is due, if any; the kind sent (None: nothing sent)."""
        now = self.now()
        kind = report_due(self.schedule, self.state, now)
        if kind is None:
            return None
        sample = self.reading(now)
        if not self.send(report_body(sample, version)):
            return None
        self.save(after_sent(self.state, now))
        return kind

    def reading(self, now: float) -> HealthSample:
        """The probe's readings, with the agent's own where the probe has none."""
        try:
            sample = self.probe()
        except Exception as exc:  # a broken probe must not stop reports or updates
            log.warning("health probe raised %s: %s", type(exc).__name__, exc)
            sample = HealthSample()
        return HealthSample(
            boot_seconds=sample.boot_seconds
            if sample.boot_seconds is not None
            else self.boot_seconds,
            restarts=sample.restarts
            if sample.restarts is not None
            else restarts(self.schedule, self.state, now),
            check_passed=sample.check_passed if sample.check_passed is not None else self.check(),
            metrics=sample.metrics,
        )
