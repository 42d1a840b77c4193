"""Pure rules for which selected devices a deployment of a release can include.

A device is left out (with a reason the operator sees) when it could never install the release:
its hardware type is not one the release supports, or the security version it last reported in
a signed check-in is above the release's (its anti-rollback counter makes it refuse the image).
Devices named explicitly that the server does not know are reported too. These checks spare a
rollout devices that would only fail; the device still enforces both rules itself, since the
server is not trusted to decide what a device runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class ExclusionReason(StrEnum):
    HARDWARE = "hardware"
    SECURITY_VERSION = "security_version"
    UNKNOWN_DEVICE = "unknown_device"


@dataclass(frozen=True)
class Candidate:
    """A device the selector picked, as the server last knew it."""

    id: str
    hardware: str
    security_version: int


@dataclass(frozen=True)
class Exclusion:
    device_id: str
    reason: ExclusionReason
    detail: str


@dataclass(frozen=True)
class Selection:
    included: tuple[str, ...]
    excluded: tuple[Exclusion, ...]

    def summary(self) -> str:
        """``"2 hardware, 1 security_version"``: why devices were left out, for messages."""
        counts: dict[str, int] = {}
        for e in self.excluded:
            counts[e.reason.value] = counts.get(e.reason.value, 0) + 1
        return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def select_compatible(
    candidates: Iterable[Candidate],
    *,
    release_hardware: Sequence[str],
    release_security_version: int,
    unknown: Iterable[str] = (),
) -> Selection:
    """Split ``candidates`` into the devices the release can go to and those it cannot.

    ``unknown``: device ids the operator listed explicitly that are not registered; they are
    reported as excluded rather than silently dropped.
    """
    included: list[str] = []
    excluded: list[Exclusion] = []
    for c in sorted(candidates, key=lambda c: c.id):
        if c.hardware not in release_hardware:
            excluded.append(
                Exclusion(
                    c.id,
                    ExclusionReason.HARDWARE,
                    f"hardware {c.hardware} is not supported by the release "
                    f"({', '.join(release_hardware)})",
                )
            )
        elif c.security_version > release_security_version:
            excluded.append(
                Exclusion(
                    c.id,
                    ExclusionReason.SECURITY_VERSION,
                    f"device reported security version {c.security_version}, above the "
                    f"release's {release_security_version}: its anti-rollback counter "
                    "would refuse it",
                )
            )
        else:
            included.append(c.id)
    for device_id in sorted(set(unknown)):
        excluded.append(
            Exclusion(device_id, ExclusionReason.UNKNOWN_DEVICE, "no such device is registered")
        )
    return Selection(tuple(included), tuple(excluded))
