"""GRUB's environment block (``grubenv``), the second ``BootEnv`` backend.

The format is GRUB's (``grub-core/lib/envblk.c``, edited by ``grub-editenv``): a file of
1024 bytes (GRUB accepts any size; an existing file keeps its size) that starts with the
signature line ``# GRUB Environment Block``, then one ``name=value`` line per variable, a
backslash escaping ``\\`` and newline in values, and ``#`` padding up to the end. Lines that
start with ``#`` are skipped. There is no checksum and one copy only, so we replace the file
atomically (temp, fsync, rename, fsync dir): after a power cut it is the old or the new block.
(GRUB itself, in ``save_env``, rewrites the file's blocks in place; it never changes the
size, which we keep too, and comment lines, such as the warning Debian's grub-editenv
adds, are kept.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from otaguard.device.storage import Storage
from otaguard.errors import BootError, ConfigError

SIGNATURE = b"# GRUB Environment Block\n"
DEFAULT_SIZE = 1024
# The rest of a line: anything but a backslash or newline, or a backslash and the byte it
# escapes (in C, by the regex engine: a Python loop per byte made the padding cost ~1 ms).
_LINE_REST = re.compile(rb"(?:[^\\\n]|\\.)*", re.DOTALL)


def _escape(value: str) -> bytes:
    return value.replace("\\", "\\\\").replace("\n", "\\\n").encode()


def encode_grubenv(
    values: Mapping[str, str], size: int = DEFAULT_SIZE, comments: Sequence[bytes] = ()
) -> bytes:
    """The block for ``values`` in order, after the signature and any ``comments`` lines."""
    lines = list(comments)
    for name, value in values.items():
        if not name or "=" in name or "\n" in name or "\\" in name or name.startswith("#"):
            raise ConfigError(f"invalid GRUB environment variable name {name!r}")
        if "\0" in value:
            raise ConfigError(f"invalid value for GRUB environment variable {name!r}")
        lines.append(name.encode() + b"=" + _escape(value) + b"\n")
    body = SIGNATURE + b"".join(lines)
    if len(body) > size:
        raise ConfigError(f"GRUB environment needs {len(body)} bytes, the block has {size}")
    return body + b"#" * (size - len(body))


def decode_grubenv(raw: bytes) -> dict[str, str]:
    """Parse a block the way ``grub_envblk_iterate`` does; ``BootError`` if it is not one."""
    if not raw.startswith(SIGNATURE):
        raise BootError("not a GRUB environment block (signature missing)")
    values: dict[str, str] = {}
    p, end = len(SIGNATURE), len(raw)
    while p < end:
        if raw[p] == ord("#"):
            p = _next_line(raw, p)
            continue
        eq = raw.find(b"=", p)
        if eq < 0:
            break  # GRUB: broken, stop
        name = raw[p:eq]
        q = eq + 1
        value = bytearray()
        while q < end and raw[q] != ord("\n"):
            if raw[q] == ord("\\") and q + 1 < end:
                q += 1
            value.append(raw[q])
            q += 1
        if q >= end:
            break  # GRUB: an unterminated last line is ignored
        values[name.decode(errors="replace")] = value.decode(errors="replace")
        p = q + 1
    return values


def comment_lines(raw: bytes) -> list[bytes]:
    """Complete ``#`` lines of a block (Debian's grub-editenv adds a warning line), not the
    ``#`` padding at the end; a rewrite keeps them."""
    if not raw.startswith(SIGNATURE):
        return []
    comments = []
    p = len(SIGNATURE)
    while p < len(raw):
        q = _next_line(raw, p)
        if q > len(raw):  # unterminated: the padding
            break
        if raw[p] == ord("#"):
            comments.append(raw[p:q])
        p = q
    return comments


def _next_line(raw: bytes, p: int) -> int:
    """Where the line at ``p`` ends, plus one (past its newline); a lone backslash as the last
    byte escapes past the end, as GRUB's loop does."""
    match = _LINE_REST.match(raw, p)
    q = match.end() if match else p
    if q < len(raw) and raw[q] == ord("\\"):  # a backslash as the very last byte
        q += 2
    return q + 1


class GrubEnv:
    """A GRUB environment block file (``/boot/grub/grubenv``) as a ``BootEnv``."""

    def __init__(self, path: Path, storage: Storage | None = None) -> None:
        self.path = path
        self.storage = storage or Storage()

    def _raw(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def exists(self) -> bool:
        raw = self._raw()
        return raw is not None and raw.startswith(SIGNATURE)

    def read(self) -> dict[str, str]:
        raw = self._raw()
        if raw is None:
            raise BootError(f"no GRUB environment block at {self.path}")
        return decode_grubenv(raw)

    def write(self, values: Mapping[str, str]) -> None:
        raw = self._raw()
        size = max(DEFAULT_SIZE, len(raw)) if raw is not None else DEFAULT_SIZE
        comments = comment_lines(raw) if raw is not None else []
        self.storage.write_atomic(self.path, encode_grubenv(values, size, comments))

    def update(self, **changes: str) -> dict[str, str]:
        values = self.read() if self.exists() else {}
        values.update(changes)
        self.write(values)
        return values
