"""A phased rollout as the console shows it: one row per phase with its devices' counts as a
stacked bar, which phase is current, and how far each got. Pure: it reads the dict
``Rollouts.view`` returns (the same the API's ``GET .../rollout`` answers with)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otaguard.server.console import charts
from otaguard.server.console.actions import RolloutFacts

#: counts that mean the device's update reached an end
ENDED = ("succeeded", "failed", "rolled_back", "silent")
BAD = ("failed", "rolled_back", "silent")


@dataclass(frozen=True)
class PhaseRow:
    index: int
    name: str
    share: float | None
    released: bool
    current: bool
    counts: dict[str, int]
    total: int
    ended: int
    bad: int
    segments: list[charts.Segment]

    @property
    def label(self) -> str:
        """Where the phase stands, in words."""
        if not self.released:
            return "waiting"
        if self.total and self.ended == self.total:
            return "done"
        return "current" if self.current else "released"

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "released": self.released,
            "current": self.current,
            "label": self.label,
            "counts": self.counts,
            "total": self.total,
            "ended": self.ended,
            "bad": self.bad,
            "segments": [s.__dict__ for s in self.segments],
        }


def phase_rows(view: Mapping[str, Any]) -> list[PhaseRow]:
    current = int(view["phase"])
    rows = []
    for i, phase in enumerate(view["phases"]):
        counts = {k: int(phase["counts"].get(k, 0)) for k in charts.PHASE_ORDER}
        rows.append(
            PhaseRow(
                index=i,
                name=str(phase["name"]),
                share=phase.get("share"),
                released=bool(phase["released"]),
                current=i == current,
                counts=counts,
                total=sum(counts.values()),
                ended=sum(counts[k] for k in ENDED),
                bad=sum(counts[k] for k in BAD),
                segments=charts.stacked(counts, charts.PHASE_ORDER),
            )
        )
    return rows


def facts(view: Mapping[str, Any]) -> RolloutFacts:
    last = view.get("last_decision") or {}
    return RolloutFacts(
        status=str(view["status"]),
        phase=int(view["phase"]),
        phases=len(view["phases"]),
        awaiting_approval=last.get("reason") == "awaiting_approval",
    )


def decision_text(view: Mapping[str, Any]) -> str:
    """The evaluator's last verdict in words ("" when there is none yet)."""
    last = view.get("last_decision") or {}
    return str(last.get("message") or last.get("action") or "")
