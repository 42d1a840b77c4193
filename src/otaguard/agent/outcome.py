"""What one step of the agent did, as a value the service loop and the simulator act on.

Pure: no I/O. ``Action`` is a closed vocabulary; its strings are the ones logs and callers
have always seen ("idle", "reboot", ...), so comparing with the plain strings still works.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    IDLE = "idle"  # nothing to do until the next poll
    REBOOT = "reboot"  # the caller must reboot the device now
    FAILED = "failed"  # an update ended without installing
    REFUSED = "refused"  # an offered update failed a check; the old image keeps running
    RETRY = "retry"  # a transient failure (network, server); the next poll tries again


@dataclass(frozen=True)
class Outcome:
    """What one ``run_once`` did; ``reboot`` asks the caller to reboot the device."""

    action: Action
    detail: str = ""

    @property
    def reboot(self) -> bool:
        return self.action is Action.REBOOT
