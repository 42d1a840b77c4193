"""Charts drawn on the server as SVG geometry (no chart library, no inline style: the
template draws ``<rect>`` elements from these numbers and the stylesheet colours them). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: width of the bar area, in SVG user units (the SVG scales to its box)
BAR_WIDTH = 300


@dataclass(frozen=True)
class Bar:
    label: str
    count: int
    width: float  # 0..BAR_WIDTH
    percent: int


def bars(items: Sequence[tuple[str, int]], scale_to: int | None = None) -> list[Bar]:
    """One horizontal bar per item, the largest (or ``scale_to``) filling the width."""
    top = max([scale_to or 0, *(n for _, n in items)], default=0)
    total = sum(n for _, n in items)
    return [
        Bar(
            label=label,
            count=n,
            width=round(BAR_WIDTH * n / top, 1) if top else 0.0,
            percent=round(100 * n / total) if total else 0,
        )
        for label, n in items
    ]


@dataclass(frozen=True)
class Segment:
    status: str
    count: int
    x: float
    width: float


#: the order a deployment's statuses are stacked in, left to right
PROGRESS_ORDER = ("succeeded", "failed", "in_progress", "pending", "cancelled")


def stacked(counts: Mapping[str, int], order: Sequence[str] = PROGRESS_ORDER) -> list[Segment]:
    """A 100 %-stacked bar of ``counts`` (statuses not in ``order`` go last)."""
    keys = [*order, *sorted(k for k in counts if k not in order)]
    total = sum(counts.values())
    out: list[Segment] = []
    x = 0.0
    for key in keys:
        n = counts.get(key, 0)
        width = round(BAR_WIDTH * n / total, 2) if total else 0.0
        out.append(Segment(key, n, round(x, 2), width))
        x += width
    return out


#: the order a rollout phase's device counts are stacked in (``fleet.progress.PhaseCounts``)
PHASE_ORDER = (
    "succeeded",
    "failed",
    "rolled_back",
    "silent",
    "installing",
    "downloading",
    "pending",
)
