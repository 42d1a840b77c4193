"""Simulated one-time-programmable anti-rollback counter.

Like eFuses, the counter can only go up: each increment "blows" one more fuse (appends one byte
to the fuse file), and the value is the number of blown fuses. A power cut during an increment
either blew the fuse or did not; it can never lower the value.
"""

from __future__ import annotations

from pathlib import Path

from otaguard.device.storage import Storage
from otaguard.errors import ConfigError

MAX_FUSES = 256


class OtpCounter:
    def __init__(self, path: Path, storage: Storage | None = None) -> None:
        self.path = path
        self.storage = storage or Storage()

    def value(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def raise_to(self, target: int) -> int:
        """Blow fuses until the value is ``target``; lower targets change nothing."""
        if target > MAX_FUSES:
            raise ConfigError(f"security version {target} exceeds the {MAX_FUSES} fuses")
        current = self.value()
        if target <= current:
            return current
        self.storage.append(self.path, b"\x01" * (target - current))
        return self.value()
