"""The device's update state machine, as pure code: a table of (state, event) -> state, and the
pure decision of what a boot tells about an update that was under way.

No I/O happens here. The agent journals every state it enters (``agent/journal.py``) *before*
doing that state's work, and every state's work is idempotent, so after a power cut or a crash
the agent redoes the work of the journaled state. ``boot_event`` decides, from the journaled
state and the facts of the boot that just happened, which event (if any) that boot implies.

The path of one update::

    idle -> checking -> downloading -> verifying -> installing -> reboot_pending
         -> trial -> health_check -> committing -> committed -> idle
                                  \\-> rolling_back -> rolled_back -> idle
    (downloading | verifying | installing) -> failed -> idle
    (downloading | verifying) -> downloading   (a delta failed: the full image, once)

``checking`` is the one state that is never journaled: it has no durable effect, so a restart
in it is a restart in ``idle`` (and journaling it would write the flash on every poll).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from otaguard.errors import InvalidTransition


class State(StrEnum):
    IDLE = "idle"
    CHECKING = "checking"  # asking the server; verifying an assignment (volatile)
    DOWNLOADING = "downloading"  # streaming into the inactive slot (resumable)
    VERIFYING = "verifying"  # whole slot read back and checked against the signed hashes
    INSTALLING = "installing"  # switching the boot env to the new slot, on trial
    REBOOT_PENDING = "reboot_pending"  # boot env points at the new slot, on trial
    TRIAL = "trial"  # booted the new slot on trial
    HEALTH_CHECK = "health_check"  # the health check decides commit or rollback
    COMMITTING = "committing"  # committing the boot env, then raising the fuses
    ROLLING_BACK = "rolling_back"  # boot env points back at the previous slot; reboot
    COMMITTED = "committed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"  # the update stopped before the new slot was ever booted


class Event(StrEnum):
    CHECK = "check"  # start a poll
    NOTHING = "nothing"  # the server has nothing for this device
    REFUSE = "refuse"  # the assignment or its target failed a check; refused, reported
    ACCEPT = "accept"  # a valid assignment for a valid, compatible, maker-signed target
    DOWNLOADED = "downloaded"
    VERIFIED = "verified"
    INSTALLED = "installed"  # the boot env now points at the new slot on trial
    BOOTED_NEW = "booted_new"
    BOOTED_OLD = "booted_old"  # the previous slot runs: the bootloader fell back or we did
    CHECK_HEALTH = "check_health"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    COMMIT_DONE = "commit_done"  # boot env committed, anti-rollback counter raised
    ERROR = "error"  # the update cannot go on; the old slot stays active
    CANCEL = "cancel"  # the server cancelled the deployment
    REPORTED = "reported"  # the final outcome is queued durably for the server
    # The delta failed (patch unavailable, tampered, undecodable, or the rebuilt image did not
    # verify): download the full image instead, once (``agent/delta_choice.py``)
    DELTA_FALLBACK = "delta_fallback"


FINAL = frozenset({State.COMMITTED, State.ROLLED_BACK, State.FAILED})
VOLATILE = frozenset({State.CHECKING})

TRANSITIONS: dict[tuple[State, Event], State] = {
    (State.IDLE, Event.CHECK): State.CHECKING,
    (State.IDLE, Event.ACCEPT): State.DOWNLOADING,  # offline install: no server to ask
    (State.CHECKING, Event.NOTHING): State.IDLE,
    (State.CHECKING, Event.REFUSE): State.IDLE,
    (State.CHECKING, Event.ERROR): State.IDLE,
    (State.CHECKING, Event.ACCEPT): State.DOWNLOADING,
    (State.DOWNLOADING, Event.DOWNLOADED): State.VERIFYING,
    (State.DOWNLOADING, Event.ERROR): State.FAILED,
    (State.DOWNLOADING, Event.CANCEL): State.FAILED,
    (State.DOWNLOADING, Event.DELTA_FALLBACK): State.DOWNLOADING,
    (State.VERIFYING, Event.VERIFIED): State.INSTALLING,
    (State.VERIFYING, Event.ERROR): State.FAILED,
    (State.VERIFYING, Event.CANCEL): State.FAILED,
    (State.VERIFYING, Event.DELTA_FALLBACK): State.DOWNLOADING,
    (State.INSTALLING, Event.INSTALLED): State.REBOOT_PENDING,
    (State.INSTALLING, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.INSTALLING, Event.ERROR): State.FAILED,
    (State.INSTALLING, Event.CANCEL): State.FAILED,  # cancelled while waiting for a window
    (State.REBOOT_PENDING, Event.BOOTED_NEW): State.TRIAL,
    (State.REBOOT_PENDING, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.TRIAL, Event.CHECK_HEALTH): State.HEALTH_CHECK,
    (State.TRIAL, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.HEALTH_CHECK, Event.HEALTHY): State.COMMITTING,
    (State.HEALTH_CHECK, Event.UNHEALTHY): State.ROLLING_BACK,
    (State.HEALTH_CHECK, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.COMMITTING, Event.COMMIT_DONE): State.COMMITTED,
    (State.COMMITTING, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.ROLLING_BACK, Event.BOOTED_OLD): State.ROLLED_BACK,
    (State.ROLLING_BACK, Event.ERROR): State.FAILED,
    (State.COMMITTED, Event.REPORTED): State.IDLE,
    (State.ROLLED_BACK, Event.REPORTED): State.IDLE,
    (State.FAILED, Event.REPORTED): State.IDLE,
}


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(
            f"event {event.value} is not allowed in state {state.value}"
        ) from None


def is_active(state: State) -> bool:
    """An update is under way: a new assignment must not start."""
    return state not in (State.IDLE, State.CHECKING, *FINAL)


@dataclass(frozen=True)
class BootFacts:
    """What the agent knows about the boot that just happened, relative to its update.

    ``on_target``: the booted slot is the update's target slot. ``trial``: booted with
    ``upgrade_available=1``. ``fell_back``: the bootloader refused the slot it was told to boot
    during this boot. ``switch_done``: the boot environment carries this update's attempt tag
    (the switch to the new slot happened, whatever came after). ``env_on_target``: the boot
    environment still points at the target slot on trial (a reboot is still to come).
    """

    on_target: bool
    trial: bool
    fell_back: bool
    switch_done: bool
    env_on_target: bool


def boot_event(state: State, facts: BootFacts) -> Event | None:
    """The event a boot implies for the journaled ``state``; ``None``: redo the state's work.

    Applied repeatedly (each result moves the state on) until it returns ``None``.
    """
    if state in (State.DOWNLOADING, State.VERIFYING):
        # The slot being written is now the running one (the bootloader fell back onto it):
        # never overwrite a running slot.
        return Event.ERROR if facts.on_target else None
    if state is State.INSTALLING:
        if facts.on_target:
            return Event.INSTALLED if facts.trial else Event.ERROR
        if not facts.switch_done:
            return None  # cut before the boot env switched: switch again
        return Event.INSTALLED if facts.env_on_target else Event.BOOTED_OLD
    if state is State.REBOOT_PENDING:
        if facts.on_target:
            return Event.BOOTED_NEW
        return None if facts.env_on_target else Event.BOOTED_OLD
    if state in (State.TRIAL, State.HEALTH_CHECK, State.COMMITTING):
        return None if facts.on_target else Event.BOOTED_OLD
    if state is State.ROLLING_BACK:
        if facts.on_target:
            # Still on the new slot: revert again, unless the previous slot is unbootable.
            return Event.ERROR if facts.fell_back else None
        return Event.BOOTED_OLD
    return None
