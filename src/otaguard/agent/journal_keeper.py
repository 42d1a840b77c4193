"""The journal in memory and on the medium: transitions, typed changes and the report outbox.

A transition (new state from ``statemachine.next_state``, a typed ``JournalChange`` and the
reports it queues) is saved in one atomic journal write, so after a power cut the state, its
changes and its reports are all there or none is. Reports are then sent in order, at least
once: a cut between a send and the save that drops it from the outbox sends it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from otaguard.agent.journal import Journal, JournalChange, JournalFile, apply_change
from otaguard.agent.statemachine import VOLATILE, Event, next_state

log = logging.getLogger(__name__)


class JournalKeeper:
    def __init__(self, file: JournalFile) -> None:
        self.file = file
        self.journal: Journal = file.load()

    def save(self) -> None:
        self.file.save(self.journal)

    def transition(
        self,
        event: Event,
        change: JournalChange | None = None,
        reports: Callable[[], Iterable[dict[str, Any]]] | None = None,
    ) -> None:
        """Take ``event``: the new state, ``change`` and the reports ``reports()`` builds (after
        the change, so they name the journal's new deployment) in one write; no write when
        the new state is volatile and nothing durable changed."""
        j = self.journal
        before = j.state
        j.state = next_state(before, event)
        if change is not None:
            apply_change(j, change)
        queued = len(j.outbox)
        if reports is not None:
            j.outbox.extend(reports())
        if change is not None or len(j.outbox) > queued or not {before, j.state} & VOLATILE:
            self.save()
        log.info(
            "transition",
            extra={"event": event.value, "from": before.value, "to": j.state.value},
        )

    def queue(self, item: dict[str, Any]) -> None:
        """Queue a progress report durably (no state change)."""
        self.journal.outbox.append(item)
        self.save()

    def flush(self, send: Callable[[dict[str, Any]], bool]) -> bool:
        """Send queued reports in order until ``send`` says one must wait; True when the
        outbox is empty afterwards."""
        sent = 0
        for item in self.journal.outbox:
            if not send(item):
                break
            sent += 1
        if sent:
            del self.journal.outbox[:sent]
            self.save()
        return not self.journal.outbox
