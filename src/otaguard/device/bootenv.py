"""Boot environment in U-Boot's format, readable and writable by ``fw_printenv``/``fw_setenv``.

An environment copy is ``env_size`` bytes: a little-endian CRC32 of the data area, (for the
redundant layout) one flags byte, then ``name=value\\0`` entries ended by an empty entry and
padded. With two copies, a write always goes to the copy that is *not* current, with flags one
higher, and is fsynced before anything else happens, so a power cut during a write leaves the
previous environment intact (its CRC still matches, the torn copy's does not).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from otaguard.device.storage import Storage
from otaguard.errors import BootError, ConfigError

DEFAULT_ENV_SIZE = 0x4000


@dataclass(frozen=True)
class EnvCopy:
    valid: bool
    flags: int
    values: dict[str, str]


def encode_env(
    values: Mapping[str, str], env_size: int, *, redundant: bool, flags: int = 0
) -> bytes:
    header = 5 if redundant else 4
    body = b"".join(f"{k}={v}".encode() + b"\0" for k, v in sorted(values.items())) + b"\0"
    for k, v in values.items():
        if not k or "=" in k or "\0" in k or "\0" in v:
            raise ConfigError(f"invalid environment entry {k!r}")
    if len(body) > env_size - header:
        raise ConfigError(f"environment needs {len(body)} bytes, only {env_size - header} fit")
    data = body + b"\0" * (env_size - header - len(body))
    crc = zlib.crc32(data).to_bytes(4, "little")
    return crc + (bytes([flags & 0xFF]) if redundant else b"") + data


def decode_env(raw: bytes, *, redundant: bool) -> EnvCopy:
    header = 5 if redundant else 4
    if len(raw) <= header:
        return EnvCopy(False, 0, {})
    crc = int.from_bytes(raw[:4], "little")
    flags = raw[4] if redundant else 0
    data = raw[header:]
    if zlib.crc32(data) != crc:
        return EnvCopy(False, flags, {})
    values: dict[str, str] = {}
    for entry in data.split(b"\0"):
        if not entry:
            break
        name, sep, value = entry.partition(b"=")
        if sep:
            values[name.decode(errors="replace")] = value.decode(errors="replace")
    return EnvCopy(True, flags, values)


def _newer(a: EnvCopy, b: EnvCopy) -> bool:
    """Whether copy ``a`` is newer than ``b`` (libubootenv's rule for incrementing flags)."""
    if a.flags == 0 and b.flags == 0xFF:
        return True
    if a.flags == 0xFF and b.flags == 0:
        return False
    return a.flags >= b.flags


class UBootEnv:
    """A U-Boot environment in one file, or two files (redundant), at offset 0."""

    def __init__(
        self,
        paths: list[Path],
        env_size: int = DEFAULT_ENV_SIZE,
        storage: Storage | None = None,
    ) -> None:
        if len(paths) not in (1, 2):
            raise ConfigError("a U-Boot environment has one or two copies")
        self.paths = paths
        self.env_size = env_size
        self.storage = storage or Storage()  # every env write goes through it (power-cut tests)

    @property
    def redundant(self) -> bool:
        return len(self.paths) == 2

    def fw_env_config(self) -> str:
        """The ``fw_env.config`` lines that make ``fw_printenv`` read this environment."""
        return "".join(f"{p} 0x0 {self.env_size:#x}\n" for p in self.paths)

    def _copies(self) -> list[EnvCopy]:
        copies = []
        for path in self.paths:
            try:
                raw = path.read_bytes()[: self.env_size]
            except FileNotFoundError:
                raw = b""
            copies.append(decode_env(raw, redundant=self.redundant))
        return copies

    def _current(self) -> tuple[int, EnvCopy] | None:
        copies = self._copies()
        valid = [(i, c) for i, c in enumerate(copies) if c.valid]
        if not valid:
            return None
        if len(valid) == 2:
            return valid[0] if _newer(valid[0][1], valid[1][1]) else valid[1]
        return valid[0]

    def exists(self) -> bool:
        return self._current() is not None

    def read(self) -> dict[str, str]:
        current = self._current()
        if current is None:
            raise BootError("no valid boot environment copy")
        return dict(current[1].values)

    def write(self, values: Mapping[str, str]) -> None:
        current = self._current()
        if self.redundant:
            index = 0 if current is None else 1 - current[0]
            flags = 0 if current is None else (current[1].flags + 1) & 0xFF
        else:
            index, flags = 0, 0
        raw = encode_env(values, self.env_size, redundant=self.redundant, flags=flags)
        path = self.paths[index]
        if self.redundant:
            # In-place write of the stale copy: a torn write leaves a bad CRC, the other copy wins.
            self.storage.write_at(path, 0, raw)
        else:
            self.storage.write_atomic(path, raw)

    def update(self, **changes: str) -> dict[str, str]:
        values = self.read() if self.exists() else {}
        values.update(changes)
        self.write(values)
        return values
