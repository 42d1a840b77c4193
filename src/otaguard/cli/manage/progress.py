"""How far a deployment has got, and how often to ask: pure, for ``deployments watch``.

A deployment's reply carries its state and a count of its devices per status (and, for a
phased rollout, the rollout's view under ``"rollout"``: status and per-phase counts).
``progress_of`` turns that into done/failed/total, per phase how many devices finished, and
whether the deployment can still change; ``next_delay``
spaces the polls out while nothing changes (so a watcher left open over a quiet rollout costs
the server one request every ``MAX_DELAY`` seconds at most) and comes back to the base interval
as soon as something moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: device statuses that no longer change
FINAL_STATUSES = ("succeeded", "failed", "cancelled")
#: deployment states that no longer change
FINAL_STATES = ("completed", "cancelled", "aborted")
#: a rollout phase's counts that mean the device's update reached an end, and the bad ones
PHASE_ENDED = ("succeeded", "failed", "rolled_back", "silent")
PHASE_BAD = ("failed", "rolled_back", "silent")
MIN_DELAY = 1.0
MAX_DELAY = 30.0
BACKOFF = 1.5

#: exit statuses of ``watch``
EXIT_ALL_SUCCEEDED = 0
EXIT_NOT_ALL_SUCCEEDED = 1  # completed with failed devices, or cancelled
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


@dataclass(frozen=True)
class PhaseProgress:
    """One phase of a phased rollout: its devices, how many finished, how many badly."""

    name: str
    total: int
    ended: int
    bad: int
    released: bool
    current: bool

    @property
    def label(self) -> str:
        if not self.released:
            return "waiting"
        if self.total and self.ended == self.total:
            return "done"
        return "current" if self.current else "released"


@dataclass(frozen=True)
class DeploymentProgress:
    state: str
    total: int
    succeeded: int
    failed: int
    cancelled: int
    rollout_status: str | None = None
    phases: tuple[PhaseProgress, ...] = ()

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def summary(self) -> str:
        pending = self.total - self.done
        rollout = ""
        if self.rollout_status is not None:
            current = next((p.name for p in self.phases if p.current), "?")
            rollout = f" (rollout {self.rollout_status}, phase {current})"
        return (
            f"{self.state}{rollout}: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.cancelled} cancelled, {pending} to go"
        )


def phases_of(rollout: Mapping[str, Any] | None) -> tuple[PhaseProgress, ...]:
    """The phases of a rollout view (``GET .../rollout``); () for an unphased deployment."""
    if not rollout:
        return ()
    current = int(rollout.get("phase", 0))
    out = []
    for i, phase in enumerate(rollout.get("phases", [])):
        counts: Mapping[str, int] = phase.get("counts", {})
        out.append(
            PhaseProgress(
                name=str(phase.get("name", i)),
                total=sum(int(n) for n in counts.values()),
                ended=sum(int(counts.get(k, 0)) for k in PHASE_ENDED),
                bad=sum(int(counts.get(k, 0)) for k in PHASE_BAD),
                released=bool(phase.get("released", False)),
                current=i == current,
            )
        )
    return tuple(out)


def progress_of(deployment: Mapping[str, Any]) -> DeploymentProgress:
    counts: Mapping[str, int] = deployment.get("counts", {})
    rollout = deployment.get("rollout")
    return DeploymentProgress(
        state=str(deployment["state"]),
        total=int(deployment.get("total", sum(counts.values()))),
        succeeded=int(counts.get("succeeded", 0)),
        failed=int(counts.get("failed", 0)),
        cancelled=int(counts.get("cancelled", 0)),
        rollout_status=str(rollout["status"]) if rollout else None,
        phases=phases_of(rollout),
    )


def next_delay(current: float, *, changed: bool, base: float) -> float:
    """The wait before the next poll: ``base`` after a change, else a little longer, bounded."""
    base = max(MIN_DELAY, base)
    if changed:
        return base
    return min(MAX_DELAY, max(base, current * BACKOFF))


def outcome(p: DeploymentProgress) -> int:
    """The exit status once finished: 0 only when every device succeeded."""
    if p.state == "completed" and p.failed == 0 and p.cancelled == 0:
        return EXIT_ALL_SUCCEEDED
    return EXIT_NOT_ALL_SUCCEEDED
