"""Pure rules for what a device's reports mean for the server's view of it.

The server never assumes success: a device is ``succeeded`` for a deployment only after it
reported ``committed`` running the deployed version, and ``failed`` when it reported a failure,
a refusal or a rollback (the reason is kept with the event).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class UpdateEvent(StrEnum):
    """Steps a device reports while it applies an assignment."""

    ASSIGNED = "assigned"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    INSTALLED = "installed"
    REBOOTING = "rebooting"
    BOOTED = "booted"
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    REFUSED = "refused"
    FAILED = "failed"
    # A transient obstacle (server or mirror unreachable, 5xx, expired or stale metadata,
    # disk full): the device retries with backoff; not a failure. Detail: "waiting: <reason>".
    WAITING = "waiting"


class TargetStatus(StrEnum):
    """Where one device stands in one deployment."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeploymentState(StrEnum):
    AWAITING_APPROVAL = "awaiting_approval"  # production: no device is offered it until approved
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ABORTED = "aborted"  # a phased rollout stopped for good (by its limits or an operator)


FAILURE_EVENTS = frozenset({UpdateEvent.ROLLED_BACK, UpdateEvent.REFUSED, UpdateEvent.FAILED})
FINAL_TARGET_STATUSES = frozenset(
    {TargetStatus.SUCCEEDED, TargetStatus.FAILED, TargetStatus.CANCELLED}
)


def target_status_after(current: TargetStatus, event: UpdateEvent) -> TargetStatus:
    """The device's deployment status once ``event`` is reported.

    Final statuses stay final, except that a later ``rolled_back`` overrides ``succeeded``
    (a device that committed and then fell back is not a success).
    """
    if current is TargetStatus.CANCELLED:
        return current
    if current is TargetStatus.SUCCEEDED:
        return TargetStatus.FAILED if event is UpdateEvent.ROLLED_BACK else current
    if current is TargetStatus.FAILED:
        return current
    if event is UpdateEvent.COMMITTED:
        return TargetStatus.SUCCEEDED
    if event in FAILURE_EVENTS:
        return TargetStatus.FAILED
    return TargetStatus.IN_PROGRESS


def deployment_state_after(
    current: DeploymentState, statuses: Iterable[TargetStatus]
) -> DeploymentState:
    """A deployment completes when every device reached a final status."""
    if current is not DeploymentState.ACTIVE:
        return current
    if all(s in FINAL_TARGET_STATUSES for s in statuses):
        return DeploymentState.COMPLETED
    return DeploymentState.ACTIVE


def is_offered(status: TargetStatus) -> bool:
    """Whether the director should (still) hand this device an assignment."""
    return status in (TargetStatus.PENDING, TargetStatus.IN_PROGRESS)
