"""The agent's journal: one JSON document, replaced atomically on every change.

Write to a temporary file, fsync it, rename it over the journal, fsync the directory (through
``device/storage.py``, so tests can cut the power at each of those steps): after a power cut
the journal is either the previous or the new version, never a mixture.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from otaguard.agent.statemachine import State
from otaguard.device.storage import Storage
from otaguard.errors import ConfigError


@dataclass
class Journal:
    state: State = State.IDLE
    deployment_id: int | None = None
    target: dict[str, Any] | None = None  # TUF target file dict + "path"
    target_slot: str | None = None
    previous_slot: str | None = None
    previous_version: str | None = None
    new_version: str | None = None
    attempt: str = ""  # tag written into the boot env with the switch (see statemachine)
    security_version: int = 0
    bytes_written: int = 0
    reason: str = ""
    last_counter: int = 0  # highest director assignment counter accepted (anti-replay)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # reports not yet acknowledged
    # What each slot holds (slot -> release version): written when a release is verified in
    # its slot, forgotten when a download starts overwriting it; the factory image is recorded
    # by provisioning. The agent never parses an image to learn what it runs.
    slot_versions: dict[str, str] = field(default_factory=dict)
    # The sha256 of the image each slot holds (slot -> hex), written with ``slot_versions``
    # when the image verified in place: the version manifest reports the booted slot's, so the
    # server can offer a delta made from exactly that image.
    slot_images: dict[str, str] = field(default_factory=dict)
    # The delta this update rebuilds its image from (``DeltaJob.to_dict``), None for the full
    # image; ``delta_fallback`` says why an offered or started delta gave way to the full one.
    delta: dict[str, Any] | None = None
    delta_fallback: str = ""

    def to_json(self) -> bytes:
        data = asdict(self)
        data["state"] = self.state.value
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Journal:
        data = json.loads(raw)
        data["state"] = State(data["state"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class DeltaJob:
    """A delta install under way: which signed delta target, from which slot, how far."""

    target: dict[str, Any]  # the delta's TUF target file dict + "path"
    source_slot: str
    source_length: int
    phase: str = "fetch"  # delta_choice.Phase
    fetched: int = 0  # patch bytes durable in the state directory (phase fetch)
    segment: int = 0  # segments rebuilt and durable in the slot (phase apply)
    offset: int = 0  # the slot bytes those segments hold

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeltaJob:
        return cls(**data)


@dataclass(frozen=True)
class SetReason:
    """Record why the update is ending (or why a boot moved it on)."""

    reason: str


@dataclass(frozen=True)
class StartUpdate:
    """Everything an accepted update journals before its first byte is downloaded."""

    deployment_id: int | None
    last_counter: int
    target: dict[str, Any]  # TUF target file dict + "path"
    target_slot: str
    previous_slot: str
    previous_version: str | None
    new_version: str
    security_version: int
    attempt: str
    delta: DeltaJob | None = None  # rebuild the image from this delta
    delta_fallback: str = ""  # why an offered delta is not used ("" when none was offered)


@dataclass(frozen=True)
class SlotHolds:
    """The slot now holds ``version`` (verified in place, image sha256 ``image_sha256``), or
    nothing known (None)."""

    slot: str
    version: str | None
    image_sha256: str | None = None


@dataclass(frozen=True)
class SlotHashed:
    """The agent hashed the active ``slot`` (once, for a delta) and found image ``sha256``."""

    slot: str
    sha256: str


@dataclass(frozen=True)
class DeltaProgress:
    """The delta install moved on: the patch is fetched so far, or rebuilt so far."""

    job: DeltaJob


@dataclass(frozen=True)
class DeltaFallback:
    """Give up the delta for the full image (once: the delta is forgotten for this update)."""

    reason: str


@dataclass(frozen=True)
class EndUpdate:
    """The final report is queued: forget the finished update's target and progress."""


#: A typed change to the journal, taken with a transition (``JournalKeeper.transition``).
JournalChange = (
    SetReason | StartUpdate | SlotHolds | EndUpdate | SlotHashed | DeltaProgress | DeltaFallback
)


def apply_change(journal: Journal, change: JournalChange) -> None:
    if isinstance(change, SetReason):
        journal.reason = change.reason
    elif isinstance(change, SlotHolds):
        journal.slot_versions.pop(change.slot, None)
        journal.slot_images.pop(change.slot, None)
        if change.version is not None:
            journal.slot_versions[change.slot] = change.version
            if change.image_sha256 is not None:
                journal.slot_images[change.slot] = change.image_sha256
    elif isinstance(change, SlotHashed):
        journal.slot_images[change.slot] = change.sha256
    elif isinstance(change, DeltaProgress):
        journal.delta = change.job.to_dict()
    elif isinstance(change, DeltaFallback):
        journal.delta = None
        journal.delta_fallback = change.reason
        journal.bytes_written = 0
    elif isinstance(change, StartUpdate):
        journal.deployment_id = change.deployment_id
        journal.last_counter = change.last_counter
        journal.target = change.target
        journal.target_slot = change.target_slot
        journal.previous_slot = change.previous_slot
        journal.previous_version = change.previous_version
        journal.new_version = change.new_version
        journal.security_version = change.security_version
        journal.attempt = change.attempt
        journal.slot_versions.pop(change.target_slot, None)  # about to be overwritten
        journal.slot_images.pop(change.target_slot, None)
        journal.bytes_written = 0
        journal.reason = ""
        journal.delta = change.delta.to_dict() if change.delta is not None else None
        journal.delta_fallback = change.delta_fallback
    else:
        journal.delta = None
        journal.delta_fallback = ""
        journal.target = None
        journal.target_slot = None
        journal.bytes_written = 0
        journal.attempt = ""
        journal.reason = ""


class JournalFile:
    def __init__(self, path: Path, storage: Storage | None = None) -> None:
        self.path = path
        self.storage = storage or Storage()

    def load(self) -> Journal:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return Journal()
        try:
            return Journal.from_json(raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"journal {self.path} is unreadable: {exc}") from exc

    def save(self, journal: Journal) -> None:
        self.storage.write_atomic(self.path, journal.to_json())
