"""Pure rules for what a device's reports mean for the server's view of it, and the one status
vocabulary every view of a device uses.

The server never assumes success: a device is ``succeeded`` for a deployment only after it
reported ``committed`` running the deployed version, and ``failed`` when it reported a failure,
a refusal or a rollback (the reason is kept with the event).

``DeviceState`` is the one list of device states: the API's ``state`` filters on the device
list and on a deployment's device list, their responses, the management CLI's ``--state``
choices and the console's filters all take it from here (tests/fleet/test_status_vocabulary.py
fails if another list of them appears in the code).
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


class DeviceState(StrEnum):
    """A device's state: ``idle`` until it reports, then the last step it reported (an
    ``UpdateEvent``). On the device list it is the device's last report (``update_state``); on
    a deployment's device list, its last report for that deployment (``idle``: none yet). So
    ``state=rolled_back`` finds the rolled-back devices in both, ``state=waiting`` the ones
    held up by something transient."""

    IDLE = "idle"
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
    WAITING = "waiting"


def device_state(last_event: str | None) -> DeviceState:
    """The state shown for a last report (None: nothing reported yet)."""
    return DeviceState.IDLE if last_event is None else DeviceState(last_event)


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
#: the states that mean a verified-bad release (the deployment entry is ``failed``), and the
#: one that means a transient obstacle the device retries (the entry stays ``in_progress``)
FAILURE_STATES = frozenset(DeviceState(e.value) for e in FAILURE_EVENTS)
TRANSIENT_STATES = frozenset({DeviceState.WAITING})
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
