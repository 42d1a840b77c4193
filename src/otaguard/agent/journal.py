"""The agent's journal: one JSON document, replaced atomically on every change.

Write to a temporary file, fsync it, rename it over the journal, fsync the directory: after a
power cut the journal is either the previous or the new version, never a mixture.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from otaguard.agent.statemachine import State
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
    security_version: int = 0
    bytes_written: int = 0
    reason: str = ""
    last_counter: int = 0  # highest director assignment counter accepted (anti-replay)
    outbox: list[dict[str, Any]] = field(default_factory=list)  # reports not yet acknowledged

    def to_json(self) -> bytes:
        data = asdict(self)
        data["state"] = self.state.value
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Journal:
        data = json.loads(raw)
        data["state"] = State(data["state"])
        return cls(**data)


class JournalFile:
    def __init__(self, path: Path) -> None:
        self.path = path

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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(journal.to_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
