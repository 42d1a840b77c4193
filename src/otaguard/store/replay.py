"""Check-in replay: is a signed manifest after the device's last accepted one? (pure)

Why a module of its own: the rule has three cases (sequence numbers, the clock rule of agents
from before them, unsigned reports) that are tested exhaustively on their own, and the check-in
batch (``store/checkin.py``) applies it to the locked device row it already read, so the rule
costs no statement. docs/SECURITY.md ("Check-in replay") states it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from otaguard.errors import ManifestReplayError
from otaguard.fleet.integrity import ManifestObservation


class ManifestReport(Protocol):
    """What the rule reads of a verified report."""

    @property
    def security_version(self) -> int: ...
    @property
    def nonce(self) -> str | None: ...
    @property
    def time(self) -> dt.datetime | None: ...
    @property
    def sequence(self) -> int | None: ...


@dataclass(frozen=True)
class ManifestMark:
    """Where a signed manifest stands in its device's order: its sequence number (None: an
    agent from before sequences), its clock (None: an unsigned report) and its nonce. For the
    device's last accepted manifest: the last sequence ever accepted, and the last manifest's
    clock and nonce."""

    sequence: int | None
    when: dt.datetime | None
    nonce: str | None


def is_replay(new: ManifestMark, last: ManifestMark) -> bool:
    """Must this manifest be refused as a replay of (or older than) the last accepted one?

    * With a sequence number: exactly when it is not above the last accepted sequence
      (the device keeps it strictly increasing across power cuts). The clock plays no part:
      a device whose clock went back is not refused, another manifest of the same second with
      a lower number is. The first sequenced manifest of a device is accepted.
    * Without one (agents from before sequences, or a device fallen back to such an agent):
      the clock rule -- older than the last accepted manifest's clock, or that same second
      with the same nonce. Manifests carry whole seconds, so this rule cannot order two
      manifests of one second.
    * Unsigned reports (no clock: tests and tools) are never replays.
    Freshness (how far the clock may be from the server's) is ``verify_manifest``'s check.
    """
    if new.when is None:
        return False
    if new.sequence is not None:
        return last.sequence is not None and new.sequence <= last.sequence
    if last.when is None:
        return False
    return new.when < last.when or (new.when == last.when and new.nonce == last.nonce)


def replay_seen(
    device_id: str,
    report: ManifestReport,
    floor: int,
    last: Mapping[str, ManifestMark],
    now: dt.datetime,
) -> ManifestObservation:
    """A refused replay, for the anomaly scan (``fleet/integrity.py``: a replay alert)."""
    mark = last[device_id]
    return ManifestObservation(
        device_id,
        report.security_version,
        floor,
        report.time or now,
        newest_seen_at=mark.when,
        nonce_reused=report.time == mark.when and report.nonce == mark.nonce,
        nonce=report.nonce,
        newest_nonce=mark.nonce,
        refused=True,
        sequence=report.sequence,
        newest_sequence=mark.sequence,
    )


def replay_error(report: ManifestReport, last: ManifestMark) -> ManifestReplayError:
    """The refusal, naming the rule that refused it."""
    if report.sequence is not None:
        return ManifestReplayError(
            f"manifest sequence {report.sequence} is not above the last accepted "
            f"{last.sequence}: not newer than the last accepted one"
        )
    return ManifestReplayError(f"manifest of {report.time} is not newer than the last accepted one")
