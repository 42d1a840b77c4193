"""What the agent tells the server, and why, as pure functions of the journal and the boot.

Reports are queued in the journal's outbox and sent in order (``agent/journal_keeper.py``);
which report ends an update, what detail it carries and what the agent returns with it, and
the reason text a boot event records, are decided here from plain values. No I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from otaguard.agent.outcome import Action, Outcome
from otaguard.agent.statemachine import Event, State
from otaguard.fleet.status import UpdateEvent

Report = tuple[UpdateEvent, dict[str, Any]]


@dataclass(frozen=True)
class RunningImage:
    """The image the device booted, as reports name it (None before the first boot)."""

    version: str | None
    slot: str | None


def report_item(
    event: UpdateEvent,
    detail: dict[str, Any],
    *,
    report_id: str,
    deployment_id: int | None,
    running: RunningImage,
) -> dict[str, Any]:
    """One outbox entry, as sent to ``POST /device/v1/events``; ``report_id`` lets the server
    store a retried report once; details that are None are left out."""
    return {
        "report_id": report_id,
        "event": event.value,
        "deployment_id": deployment_id,
        "version": running.version,
        "slot": running.slot,
        "detail": {k: v for k, v in detail.items() if v is not None},
    }


def installed_reports(target_slot: str | None) -> tuple[Report, ...]:
    """The reports of a finished switch to the new slot (sent before the reboot)."""
    return ((UpdateEvent.INSTALLED, {"slot_written": target_slot}), (UpdateEvent.REBOOTING, {}))


def final_report(state: State, reason: str, security_version: int) -> tuple[Report, Outcome]:
    """The report that ends an update in the final ``state``, and what ``run_once`` returns."""
    if state is State.COMMITTED:
        return (UpdateEvent.COMMITTED, {"security_version": security_version}), Outcome(
            Action.IDLE, "committed"
        )
    if state is State.ROLLED_BACK:
        return (UpdateEvent.ROLLED_BACK, {"reason": reason or None}), Outcome(
            Action.IDLE, f"rolled back: {reason}"
        )
    return (UpdateEvent.FAILED, {"reason": reason or None}), Outcome(Action.FAILED, reason)


def refusal_report(error: str, code: str) -> Report:
    return (UpdateEvent.REFUSED, {"error": error, "code": code})


def boot_reason(
    event: Event,
    state: State,
    *,
    journaled: str,
    boot_reason: str,
    booted_slot: str,
    target_slot: str | None,
) -> str | None:
    """The reason a boot event records in the journal (None: the event records none).

    ``journaled`` is the reason already in the journal (a failed health check, say), which a
    later fallback must not overwrite; ``boot_reason`` is what the bootloader said.
    """
    if event is Event.BOOTED_OLD:
        return (
            journaled
            or boot_reason
            or (
                f"the bootloader went back to slot {booted_slot}: the trial of slot "
                f"{target_slot} was not confirmed within bootlimit boots"
            )
        )
    if event is Event.ERROR:
        if state is State.ROLLING_BACK:
            return f"rollback impossible, the previous slot does not boot: {boot_reason}"
        return f"the device now runs slot {booted_slot}, the update's target; abandoned"
    return None
