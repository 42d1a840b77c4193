"""Typed journal changes (``agent/journal.py``) and the journal keeper's one-write transitions
(``agent/journal_keeper.py``), against an in-memory journal file."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest

from otaguard.agent.journal import (
    EndUpdate,
    Journal,
    JournalFile,
    SetReason,
    StartUpdate,
    apply_change,
)
from otaguard.agent.journal_keeper import JournalKeeper
from otaguard.agent.statemachine import Event, State

START = StartUpdate(
    deployment_id=9,
    last_counter=12,
    target={"path": "fw.img", "length": 3, "hashes": {"sha256": "ab"}},
    target_slot="b",
    previous_slot="a",
    previous_version="1.0",
    new_version="2.0",
    security_version=2,
    attempt="t1",
)


def busy() -> Journal:
    return Journal(
        state=State.DOWNLOADING,
        deployment_id=3,
        target={"path": "old"},
        target_slot="a",
        previous_slot="b",
        previous_version="0.9",
        new_version="1.0",
        attempt="t0",
        security_version=1,
        bytes_written=77,
        reason="earlier",
        last_counter=5,
        outbox=[{"event": "x"}],
    )


def test_start_sets_every_field_it_names_and_resets_progress() -> None:
    j = busy()
    apply_change(j, START)
    for f in fields(StartUpdate):
        assert getattr(j, f.name) == getattr(START, f.name)
    assert (j.bytes_written, j.reason, j.state, j.outbox) == (
        0,
        "",
        State.DOWNLOADING,
        [{"event": "x"}],
    )


def test_end_forgets_the_update_but_keeps_its_history() -> None:
    j = busy()
    apply_change(j, EndUpdate())
    assert (j.target, j.target_slot, j.bytes_written, j.attempt, j.reason) == (
        None,
        None,
        0,
        "",
        "",
    )
    # kept: the anti-replay counter, the deployment named by the final report, the versions
    assert (j.last_counter, j.deployment_id, j.new_version) == (5, 3, "1.0")


def test_set_reason_changes_only_the_reason() -> None:
    j, before = busy(), busy()
    apply_change(j, SetReason("why"))
    assert j.reason == "why"
    before.reason = "why"
    assert j == before


def test_every_start_field_is_a_journal_field() -> None:
    """A misspelt field in a change type is caught here (and by mypy in apply_change)."""
    assert {f.name for f in fields(StartUpdate)} <= {f.name for f in fields(Journal)}


class MemoryFile(JournalFile):
    def __init__(self, journal: Journal | None = None) -> None:
        self.saved: list[bytes] = []
        self.initial = journal or Journal()

    def load(self) -> Journal:
        return self.initial

    def save(self, journal: Journal) -> None:
        self.saved.append(journal.to_json())


def keeper(state: State = State.IDLE) -> tuple[JournalKeeper, MemoryFile]:
    f = MemoryFile(Journal(state=state))
    return JournalKeeper(f), f


@pytest.mark.parametrize(
    ("state", "event", "change", "reports", "writes"),
    [
        (State.IDLE, Event.CHECK, None, False, 0),  # into the volatile state: no write
        (State.CHECKING, Event.NOTHING, None, False, 0),  # out of it, nothing changed
        (State.CHECKING, Event.ERROR, None, False, 0),
        (State.CHECKING, Event.REFUSE, None, True, 1),  # a queued report is durable
        (State.CHECKING, Event.ACCEPT, START, True, 1),
        (State.DOWNLOADING, Event.DOWNLOADED, None, True, 1),
        (State.TRIAL, Event.CHECK_HEALTH, None, False, 1),  # durable state to durable state
        (State.HEALTH_CHECK, Event.UNHEALTHY, SetReason("bad"), False, 1),
        (State.FAILED, Event.REPORTED, EndUpdate(), True, 1),
    ],
)
def test_one_write_per_durable_transition(
    state: State, event: Event, change: Any, reports: bool, writes: int
) -> None:
    k, f = keeper(state)
    items = (
        (lambda: [{"event": "r", "deployment_id": k.journal.deployment_id}]) if reports else None
    )
    k.transition(event, change, items)
    assert len(f.saved) == writes
    if writes:
        saved = Journal.from_json(f.saved[-1])
        assert saved.state is k.journal.state
        assert len(saved.outbox) == (1 if reports else 0)


def test_reports_are_built_after_the_change() -> None:
    """The DOWNLOADING report names the deployment the same write starts."""
    k, f = keeper(State.CHECKING)
    k.transition(Event.ACCEPT, START, lambda: [{"deployment_id": k.journal.deployment_id}])
    assert Journal.from_json(f.saved[0]).outbox == [{"deployment_id": 9}]


def test_flush_stops_at_the_first_report_that_must_wait() -> None:
    k, f = keeper()
    for i in range(4):
        k.queue({"n": i})
    sent: list[int] = []

    def send(item: dict[str, Any]) -> bool:
        if item["n"] == 2:
            return False
        sent.append(item["n"])
        return True

    assert k.flush(send) is False
    assert sent == [0, 1]
    assert Journal.from_json(f.saved[-1]).outbox == [{"n": 2}, {"n": 3}]
    writes = len(f.saved)
    assert k.flush(lambda _item: False) is False
    assert len(f.saved) == writes  # nothing sent, nothing written
    assert k.flush(lambda _item: True) is True
    assert k.journal.outbox == []
