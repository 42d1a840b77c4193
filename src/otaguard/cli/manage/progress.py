"""How far a deployment has got, and how often to ask: pure, for ``deployments watch``.

A deployment's reply carries its state and a count of its devices per status. ``progress_of``
turns that into done/failed/total and whether the deployment can still change; ``next_delay``
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
FINAL_STATES = ("completed", "cancelled")
MIN_DELAY = 1.0
MAX_DELAY = 30.0
BACKOFF = 1.5

#: exit statuses of ``watch``
EXIT_ALL_SUCCEEDED = 0
EXIT_NOT_ALL_SUCCEEDED = 1  # completed with failed devices, or cancelled
EXIT_TIMED_OUT = 3
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


@dataclass(frozen=True)
class DeploymentProgress:
    state: str
    total: int
    succeeded: int
    failed: int
    cancelled: int

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def summary(self) -> str:
        pending = self.total - self.done
        return (
            f"{self.state}: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.cancelled} cancelled, {pending} to go"
        )


def progress_of(deployment: Mapping[str, Any]) -> DeploymentProgress:
    counts: Mapping[str, int] = deployment.get("counts", {})
    return DeploymentProgress(
        state=str(deployment["state"]),
        total=int(deployment.get("total", sum(counts.values()))),
        succeeded=int(counts.get("succeeded", 0)),
        failed=int(counts.get("failed", 0)),
        cancelled=int(counts.get("cancelled", 0)),
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
