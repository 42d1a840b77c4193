"""What the agent reports and records (``agent/reporting.py``), from plain values."""

from __future__ import annotations

import pytest

from otaguard.agent.outcome import Action, Outcome
from otaguard.agent.reporting import (
    RunningImage,
    boot_reason,
    final_report,
    installed_reports,
    refusal_report,
    report_item,
)
from otaguard.agent.statemachine import FINAL, Event, State
from otaguard.fleet.status import UpdateEvent


@pytest.mark.parametrize(
    ("state", "reason", "report", "outcome"),
    [
        (
            State.COMMITTED,
            "",
            (UpdateEvent.COMMITTED, {"security_version": 4}),
            Outcome(Action.IDLE, "committed"),
        ),
        (
            State.ROLLED_BACK,
            "health check failed: exit 1",
            (UpdateEvent.ROLLED_BACK, {"reason": "health check failed: exit 1"}),
            Outcome(Action.IDLE, "rolled back: health check failed: exit 1"),
        ),
        (
            State.ROLLED_BACK,
            "",
            (UpdateEvent.ROLLED_BACK, {"reason": None}),
            Outcome(Action.IDLE, "rolled back: "),
        ),
        (
            State.FAILED,
            "download failed",
            (UpdateEvent.FAILED, {"reason": "download failed"}),
            Outcome(Action.FAILED, "download failed"),
        ),
        (State.FAILED, "", (UpdateEvent.FAILED, {"reason": None}), Outcome(Action.FAILED, "")),
    ],
)
def test_final_report_table(state: State, reason: str, report: object, outcome: Outcome) -> None:
    assert final_report(state, reason, 4) == (report, outcome)


@pytest.mark.parametrize("state", sorted(FINAL))
def test_every_final_state_has_its_own_report(state: State) -> None:
    (event, _detail), _ = final_report(state, "why", 0)
    assert event.value == state.value


def test_report_item_drops_empty_details_and_names_the_running_image() -> None:
    item = report_item(
        UpdateEvent.DOWNLOADED,
        {"bytes": 10, "reason": None},
        report_id="r1",
        deployment_id=3,
        running=RunningImage("1.0", "a"),
    )
    assert item == {
        "report_id": "r1",
        "event": "downloaded",
        "deployment_id": 3,
        "version": "1.0",
        "slot": "a",
        "detail": {"bytes": 10},
    }


def test_installed_and_refusal_reports() -> None:
    assert installed_reports("b") == (
        (UpdateEvent.INSTALLED, {"slot_written": "b"}),
        (UpdateEvent.REBOOTING, {}),
    )
    assert refusal_report("bad", "assignment") == (
        UpdateEvent.REFUSED,
        {"error": "bad", "code": "assignment"},
    )


@pytest.mark.parametrize(
    ("event", "state", "journaled", "said", "want"),
    [
        (Event.BOOTED_OLD, State.TRIAL, "health check failed", "x", "health check failed"),
        (Event.BOOTED_OLD, State.TRIAL, "", "slot b does not boot", "slot b does not boot"),
        (
            Event.BOOTED_OLD,
            State.REBOOT_PENDING,
            "",
            "",
            "the bootloader went back to slot a: the trial of slot b was not confirmed "
            "within bootlimit boots",
        ),
        (
            Event.ERROR,
            State.ROLLING_BACK,
            "",
            "bad header",
            "rollback impossible, the previous slot does not boot: bad header",
        ),
        (
            Event.ERROR,
            State.DOWNLOADING,
            "",
            "",
            "the device now runs slot a, the update's target; abandoned",
        ),
        (Event.BOOTED_NEW, State.REBOOT_PENDING, "", "", None),
        (Event.INSTALLED, State.INSTALLING, "", "", None),
    ],
)
def test_boot_reasons(
    event: Event, state: State, journaled: str, said: str, want: str | None
) -> None:
    got = boot_reason(
        event, state, journaled=journaled, boot_reason=said, booted_slot="a", target_slot="b"
    )
    assert got == want


def test_outcome_actions_keep_their_wire_strings() -> None:
    assert [a.value for a in Action] == ["idle", "reboot", "failed", "refused", "retry"]
    assert Outcome(Action.REBOOT).reboot
    assert not Outcome(Action.IDLE).reboot
    assert Outcome(Action.FAILED).action == "failed"
