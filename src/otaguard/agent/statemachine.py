"""The device's update state machine, as pure code: a table of (state, event) -> state.

No I/O happens here; the agent journals every state it enters before acting on it, so after a
power cut it resumes from the journaled state (see ``agent/journal.py``).
"""

from __future__ import annotations

from enum import StrEnum

from otaguard.errors import OTAGuardError


class State(StrEnum):
    IDLE = "idle"
    DOWNLOADING = "downloading"  # streaming into the inactive slot (resumable)
    VERIFYING = "verifying"  # whole slot read back and checked against the signed hashes
    REBOOT_PENDING = "reboot_pending"  # boot env points at the new slot, on trial
    TRIAL = "trial"  # booted the new slot; health check decides
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"


class Event(StrEnum):
    ACCEPT = "accept"  # a valid assignment for a valid, compatible, maker-signed target
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    BOOTED_NEW = "booted_new"
    BOOTED_OLD = "booted_old"  # the bootloader fell back
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    ERROR = "error"  # verification or install failed: the old slot stays active
    CANCEL = "cancel"
    REPORTED = "reported"  # the final outcome reached the server


FINAL = frozenset({State.COMMITTED, State.ROLLED_BACK, State.FAILED})

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.IDLE, Event.ACCEPT): State.DOWNLOADING,
    (State.DOWNLOADING, Event.DOWNLOADED): State.VERIFYING,
    (State.DOWNLOADING, Event.ERROR): State.FAILED,
    (State.DOWNLOADING, Event.CANCEL): State.FAILED,
    (State.VERIFYING, Event.VERIFIED): State.REBOOT_PENDING,
    (State.VERIFYING, Event.ERROR): State.FAILED,
    (State.VERIFYING, Event.CANCEL): State.FAILED,
    (State.REBOOT_PENDING, Event.BOOTED_NEW): State.TRIAL,
    (State.REBOOT_PENDING, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.TRIAL, Event.HEALTHY): State.COMMITTED,
    (State.TRIAL, Event.UNHEALTHY): State.ROLLED_BACK,
    (State.TRIAL, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.COMMITTED, Event.REPORTED): State.IDLE,
    (State.ROLLED_BACK, Event.REPORTED): State.IDLE,
    (State.FAILED, Event.REPORTED): State.IDLE,
}


class InvalidTransition(OTAGuardError):
    code = "state"


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(
            f"event {event.value} is not allowed in state {state.value}"
        ) from None


def is_active(state: State) -> bool:
    """An update is under way: a new assignment must not start."""
    return state not in (State.IDLE, *FINAL)
