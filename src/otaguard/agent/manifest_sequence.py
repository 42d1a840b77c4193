"""The agent's manifest sequence counter: every signed version manifest carries a number higher
than any this device signed before, across restarts and power cuts.

Why: the server refuses a manifest whose number is not above the last one it accepted
(``store/replay.py`` ``is_replay``), so a captured manifest cannot be sent again later, not
even one of the same second, and the order does not depend on the device's clock (a board
without a battery-backed clock may boot in the past).

Why a file of its own (``state_dir/manifest_sequence.json``) and not a journal field: an agent
from before sequences, booted after a fallback to the old slot, loads and rewrites the journal
and drops fields it does not know; it never touches this file, so the count survives the
fallback and the return to the new agent.

Flash wear: numbers are reserved in blocks (``BLOCK``). Only the block's end is written (one
atomic write per ``BLOCK`` check-ins); after a restart the agent continues above the
reserved end, skipping what was reserved and unused. Gaps are allowed, reuse never: a number
is handed out only after the write that reserves it has completed (fsynced file and directory).
"""

from __future__ import annotations

import json
from pathlib import Path

from otaguard.device.storage import Storage
from otaguard.errors import ConfigError

#: numbers reserved per durable write
BLOCK = 64
FILE_NAME = "manifest_sequence.json"
MAX_SEQUENCE = 2**63 - 1  # the server's column (director/manifest.py MAX_SEQUENCE)


def next_number(next_free: int, reserved: int, block: int = BLOCK) -> tuple[int, int]:
    """Pure: the number to use and the reserved end afterwards (to be written durably before
    the number is used when it differs from ``reserved``). ``next_free``: the lowest number not
    yet handed out in this run; ``reserved``: the durable reserved end (0: none)."""
    if next_free <= reserved:
        return next_free, reserved
    return next_free, min(next_free + block - 1, MAX_SEQUENCE)


class ManifestSequence:
    """The durable counter in ``path`` (written through ``storage``, so tests cut the power)."""

    def __init__(self, path: Path, storage: Storage | None = None, *, block: int = BLOCK) -> None:
        self.path = path
        self.storage = storage or Storage()
        self.block = block
        self.reserved = 0
        self.next_free = 0  # 0: the file is read at the first ``take`` (not at agent start)

    def _load(self) -> int:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return 0
        try:
            value = json.loads(raw)["reserved"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"manifest sequence file {self.path} is unreadable: {exc}") from exc
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SEQUENCE:
            raise ConfigError(f"manifest sequence file {self.path} holds no valid number")
        return value

    def take(self) -> int:
        """The next number, reserved durably before it is returned.

        Raises:
            ConfigError: the file is unreadable, or every number is used up.
            OSError: the reservation could not be written (nothing handed out).
        """
        if self.next_free == 0:
            self.reserved = self._load()
            # Numbers up to the reserved end may have been used before a restart: go above.
            self.next_free = self.reserved + 1
        if self.next_free > MAX_SEQUENCE:
            raise ConfigError("manifest sequence numbers are used up")
        number, reserved = next_number(self.next_free, self.reserved, self.block)
        if reserved != self.reserved:
            data = json.dumps({"reserved": reserved}).encode()
            self.storage.write_atomic(self.path, data, mode=0o600)
            self.reserved = reserved
        self.next_free = number + 1
        return number
