"""Boot environments: the ``BootEnv`` interface the bootloader and the agent use, and its U-Boot
implementation, readable and writable by ``fw_printenv``/``fw_setenv`` (libubootenv).

A U-Boot environment copy is ``env_size`` bytes: a little-endian CRC32 of the data area, (for
the redundant layout) one flags byte, then ``name=value\\0`` entries ended by an empty entry and
padded to the end (the CRC covers the padding too; libubootenv leaves whatever its buffer held,
U-Boot's ``mkenvimage`` uses ``0xff``, we write ``0x00``: readers must not care). A copy whose
size is short of ``env_size`` is invalid (libubootenv reads exactly ``env_size`` bytes).

With two copies a write always goes to the copy that is *not* current, with flags one higher
(mod 256), and is fsynced before anything else happens, so a power cut during a write leaves the
previous environment intact (its CRC still matches, the torn copy's does not). Which copy is
current follows libubootenv's ``libuboot_load`` for incremental flags: the only valid copy; of
two valid copies the one with the higher flags, except that ``0`` beats ``0xff`` (wrap-around),
and copy 0 on a tie.

Copies may live in their own files (the simulator) or at offsets of one device or file (a real
board: ``/dev/mmcblk0 0x3f0000 0x4000``); ``fw_env_config()`` writes the matching config lines.
"""

from __future__ import annotations

import stat
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from otaguard.device.storage import Storage
from otaguard.errors import BootError, ConfigError

DEFAULT_ENV_SIZE = 0x4000


class BootEnv(Protocol):
    """What the bootloader and the agent need from a boot environment, whatever its format."""

    def exists(self) -> bool:
        """Whether a valid environment is present."""
        ...

    def read(self) -> dict[str, str]:
        """All variables; ``BootError`` when no valid environment is present."""
        ...

    def write(self, values: Mapping[str, str]) -> None:
        """Replace the environment with ``values`` (power-cut safe: old or new afterwards)."""
        ...

    def update(self, **changes: str) -> dict[str, str]:
        """Set some variables, keep the others; returns the new environment."""
        ...


@dataclass(frozen=True)
class EnvCopy:
    valid: bool
    flags: int
    values: dict[str, str]


def _check_entry(name: str, value: str) -> None:
    if not name or "=" in name or "\0" in name or "\0" in value:
        raise ConfigError(f"invalid environment entry {name!r}")


def encode_env(
    values: Mapping[str, str], env_size: int, *, redundant: bool, flags: int = 0
) -> bytes:
    header = 5 if redundant else 4
    for k, v in values.items():
        _check_entry(k, v)
    body = b"".join(f"{k}={v}".encode() + b"\0" for k, v in sorted(values.items())) + b"\0"
    if len(body) > env_size - header:
        raise ConfigError(f"environment needs {len(body)} bytes, only {env_size - header} fit")
    data = body + b"\0" * (env_size - header - len(body))
    crc = zlib.crc32(data).to_bytes(4, "little")
    return crc + (bytes([flags & 0xFF]) if redundant else b"") + data


def decode_env(raw: bytes, *, redundant: bool, env_size: int | None = None) -> EnvCopy:
    """Decode one copy; ``env_size`` (when given) is the exact size a valid copy has."""
    header = 5 if redundant else 4
    if len(raw) <= header or (env_size is not None and len(raw) != env_size):
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
        if sep:  # libubootenv skips entries without "="
            values[name.decode(errors="replace")] = value.decode(errors="replace")
    return EnvCopy(True, flags, values)


def current_copy(copies: Sequence[EnvCopy]) -> int | None:
    """Index of the copy libubootenv (and U-Boot) would use, or ``None`` if none is valid."""
    valid = [i for i, c in enumerate(copies) if c.valid]
    if not valid:
        return None
    if len(valid) == 1:
        return valid[0]
    f0, f1 = copies[0].flags, copies[1].flags
    if f0 == 0xFF and f1 == 0:
        return 1
    if f1 == 0xFF and f0 == 0:
        return 0
    return 1 if f1 > f0 else 0


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except FileNotFoundError:
        return True


class UBootEnv:
    """A U-Boot environment: one copy or two (redundant), each in a file or device at an offset.

    ``offsets`` defaults to 0 for each path. A single copy at offset 0 of a regular file is
    replaced atomically (temp, fsync, rename, fsync dir); every other layout is written in place
    (what U-Boot and ``fw_setenv`` do), which the redundant layout makes power-cut safe.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        env_size: int = DEFAULT_ENV_SIZE,
        storage: Storage | None = None,
        *,
        offsets: Sequence[int] | None = None,
    ) -> None:
        if len(paths) not in (1, 2):
            raise ConfigError("a U-Boot environment has one or two copies")
        self.paths = list(paths)
        self.offsets = list(offsets) if offsets is not None else [0] * len(self.paths)
        if len(self.offsets) != len(self.paths) or any(o < 0 for o in self.offsets):
            raise ConfigError("one non-negative offset per environment copy")
        if env_size <= 8:
            raise ConfigError(f"environment size {env_size} is too small")
        if (
            len(self.paths) == 2
            and self.paths[0] == self.paths[1]
            and abs(self.offsets[0] - self.offsets[1]) < env_size
        ):
            raise ConfigError("the two environment copies overlap")
        self.env_size = env_size
        self.storage = storage or Storage()  # every env write goes through it (power-cut tests)

    @property
    def redundant(self) -> bool:
        return len(self.paths) == 2

    def fw_env_config(self) -> str:
        """The ``fw_env.config`` lines that make ``fw_printenv``/``fw_setenv`` use this
        environment (device, offset, size per copy; pass the file with ``-c``)."""
        return "".join(
            f"{p} {o:#x} {self.env_size:#x}\n"
            for p, o in zip(self.paths, self.offsets, strict=True)
        )

    def _read_copy(self, index: int) -> bytes:
        try:
            with open(self.paths[index], "rb") as fh:
                fh.seek(self.offsets[index])
                return fh.read(self.env_size)
        except FileNotFoundError:
            return b""

    def copies(self) -> list[EnvCopy]:
        return [
            decode_env(self._read_copy(i), redundant=self.redundant, env_size=self.env_size)
            for i in range(len(self.paths))
        ]

    def _current(self) -> tuple[int, EnvCopy] | None:
        copies = self.copies()
        index = current_copy(copies)
        return None if index is None else (index, copies[index])

    def exists(self) -> bool:
        return self._current() is not None

    def read(self) -> dict[str, str]:
        current = self._current()
        if current is None:
            raise BootError("no valid boot environment copy")
        return dict(current[1].values)

    def write(self, values: Mapping[str, str]) -> None:
        current = self._current()
        if not self.redundant:
            self._write_copy(0, encode_env(values, self.env_size, redundant=False))
        elif current is None:
            # No valid copy (a fresh or wiped device): write both, so that both exist with the
            # full size (libubootenv refuses an environment whose second copy is missing).
            raw = encode_env(values, self.env_size, redundant=True, flags=0)
            self._write_copy(0, raw)
            self._write_copy(1, raw)
        else:
            index, copy = 1 - current[0], current[1]
            flags = (copy.flags + 1) & 0xFF
            self._write_copy(index, encode_env(values, self.env_size, redundant=True, flags=flags))

    def _write_copy(self, index: int, raw: bytes) -> None:
        path, offset = self.paths[index], self.offsets[index]
        if not self.redundant and offset == 0 and _is_regular_file(path):
            self.storage.write_atomic(path, raw)
        else:
            # In-place write of the stale copy: a torn write leaves a bad CRC, the other copy wins.
            self.storage.write_at(path, offset, raw)

    def update(self, **changes: str) -> dict[str, str]:
        values = self.read() if self.exists() else {}
        values.update(changes)
        self.write(values)
        return values
