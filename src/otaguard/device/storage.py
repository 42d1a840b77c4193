"""Every durable write a device makes goes through one small layer, so tests can cut the power.

The device side (slots, boot environment, OTP fuses, the agent's journal) writes only through a
``Storage``: five primitive operations (``write``, ``fsync``, ``rename``, ``truncate``,
``fsync_dir``) and three compositions of them (``write_atomic``: temp, fsync, rename, fsync dir;
``open_update``: in-place writes then fsync; ``append``). Files are opened unbuffered, so
nothing reaches the disk except through a primitive.

``PowerCutStorage`` counts the primitives and cuts the power at the k-th: the operation is torn
(a write leaves a prefix of its bytes, a rename or truncate does not happen), ``PowerCut`` is
raised, and every later operation raises it too (nothing runs after a power cut). With
``lose_unsynced`` it also models a disk cache: writes not yet fsynced and renames whose
directory was not yet fsynced are undone, as if they never reached the flash. The two modes
bracket what a real disk may keep.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

OPERATIONS = ("write", "fsync", "rename", "truncate", "fsync_dir")


class PowerCut(BaseException):
    """The simulated power went off. A ``BaseException`` so that no ``except Exception`` in
    the code under test can swallow it: nothing after a power cut may run."""


class FileWriter:
    """An open file written in place through the storage layer."""

    def __init__(self, storage: Storage, path: Path, fh: BinaryIO) -> None:
        self._storage = storage
        self.path = path
        self._fh = fh

    def write(self, data: bytes) -> None:
        self._storage.write(self._fh, self.path, data)

    def sync(self) -> None:
        self._storage.fsync(self._fh, self.path)

    def truncate(self, length: int) -> None:
        self._storage.truncate(self._fh, self.path, length)

    def tell(self) -> int:
        return self._fh.tell()

    def seek(self, offset: int) -> None:
        self._fh.seek(offset)


def _opener(mode: int | None) -> Callable[[str, int], int]:
    def opener(name: str, flags: int) -> int:
        return os.open(name, flags, 0o666 if mode is None else mode)

    return opener


class Storage:
    """Plain POSIX durability: each primitive does exactly what it says."""

    # -- primitives ------------------------------------------------------------------------
    def write(self, fh: BinaryIO, path: Path, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = fh.write(view)
            view = view[n or 0 :]

    def fsync(self, fh: BinaryIO, path: Path) -> None:
        os.fsync(fh.fileno())

    def rename(self, src: Path, dst: Path) -> None:
        os.replace(src, dst)

    def truncate(self, fh: BinaryIO, path: Path, length: int) -> None:
        fh.truncate(length)

    def fsync_dir(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- compositions ----------------------------------------------------------------------
    def write_atomic(self, path: Path, data: bytes, *, mode: int | None = None) -> None:
        """Replace ``path`` with ``data``: after a power cut it holds the old or the new bytes.
        ``mode`` (e.g. ``0o600`` for a private key) is set before any byte is written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb", buffering=0, opener=_opener(mode)) as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)  # also when a stale temporary file existed
            self.write(fh, tmp, data)
            self.fsync(fh, tmp)
        self.rename(tmp, path)
        self.fsync_dir(path.parent)

    @contextmanager
    def open_update(
        self, path: Path, offset: int = 0, *, truncate: bool = False, create: bool = True
    ) -> Iterator[FileWriter]:
        """Write ``path`` in place from ``offset``; fsynced when the block ends normally."""
        if create and not path.exists():
            with open(path, "wb", buffering=0):
                pass
            self.fsync_dir(path.parent)
        with open(path, "r+b", buffering=0) as fh:
            writer = FileWriter(self, path, fh)
            if truncate:
                writer.truncate(offset)
            fh.seek(offset)
            yield writer
            writer.sync()

    def write_at(self, path: Path, offset: int, data: bytes) -> None:
        with self.open_update(path, offset) as w:
            w.write(data)

    def append(self, path: Path, data: bytes) -> None:
        with self.open_update(path, path.stat().st_size if path.exists() else 0) as w:
            w.write(data)

    def truncate_file(self, path: Path, length: int) -> None:
        with self.open_update(path, length, truncate=True, create=False):
            pass


@dataclass
class _Undo:
    path: Path
    kind: str  # "data" (undone by the file's fsync) or "rename" (by its directory's fsync)
    revert: Callable[[], None]


@dataclass
class PowerCutStorage(Storage):
    """Counts primitive operations; cuts the power at operation ``cut_at`` (1-based).

    ``cut_at=None`` only counts (to learn how many cut points a scenario has). ``torn_fraction``
    is the share of a cut write's bytes that land on the disk.
    """

    cut_at: int | None = None
    lose_unsynced: bool = False
    torn_fraction: float = 0.5
    count: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OPERATIONS, 0))
    cut: bool = False
    cut_operation: str = ""
    _undo: list[_Undo] = field(default_factory=list)

    def _step(self, kind: str) -> bool:
        """Count one operation; ``True`` when it is the one the power goes off in."""
        if self.cut:
            raise PowerCut("the power is off")
        self.count += 1
        self.counts[kind] += 1
        if self.cut_at is not None and self.count == self.cut_at:
            self.cut = True
            self.cut_operation = kind
            return True
        return False

    def cut_now(self) -> None:
        """Cut the power now, between operations (e.g. while bytes are on the wire)."""
        if not self.cut:
            self.cut = True
            self.cut_operation = "between operations"
        self._power_off()

    def _power_off(self) -> None:
        if self.lose_unsynced:
            for undo in reversed(self._undo):
                undo.revert()
        self._undo.clear()
        raise PowerCut(f"power cut at operation {self.count} ({self.cut_operation})")

    def _remember_data(self, fh: BinaryIO, path: Path, start: int, end: int) -> None:
        if not self.lose_unsynced:
            return
        old_size = os.fstat(fh.fileno()).st_size
        with open(path, "rb") as r:
            r.seek(start)
            old = r.read(max(0, min(end, old_size) - start))

        def revert() -> None:
            with open(path, "r+b") as w:
                w.seek(start)
                w.write(old)
                w.truncate(old_size)

        self._undo.append(_Undo(path, "data", revert))

    def write(self, fh: BinaryIO, path: Path, data: bytes) -> None:
        cut = self._step("write")
        pos = fh.tell()
        self._remember_data(fh, path, pos, pos + len(data))
        if cut:
            super().write(fh, path, data[: int(len(data) * self.torn_fraction)])
            self._power_off()
        super().write(fh, path, data)

    def fsync(self, fh: BinaryIO, path: Path) -> None:
        if self._step("fsync"):
            self._power_off()
        super().fsync(fh, path)
        self._undo = [u for u in self._undo if not (u.kind == "data" and u.path == path)]

    def truncate(self, fh: BinaryIO, path: Path, length: int) -> None:
        if self._step("truncate"):
            self._power_off()
        size = os.fstat(fh.fileno()).st_size
        if self.lose_unsynced and length != size:
            with open(path, "rb") as r:
                r.seek(min(length, size))
                tail = r.read()

            def revert() -> None:
                with open(path, "r+b") as w:
                    w.truncate(min(length, size))
                    w.seek(min(length, size))
                    w.write(tail)

            self._undo.append(_Undo(path, "data", revert))
        super().truncate(fh, path, length)

    def rename(self, src: Path, dst: Path) -> None:
        if self._step("rename"):
            self._power_off()
        if self.lose_unsynced:
            old = dst.read_bytes() if dst.exists() else None

            def revert() -> None:
                if old is None:
                    dst.unlink(missing_ok=True)
                else:
                    dst.write_bytes(old)

            self._undo.append(_Undo(dst.parent, "rename", revert))
        super().rename(src, dst)

    def fsync_dir(self, directory: Path) -> None:
        if self._step("fsync_dir"):
            self._power_off()
        super().fsync_dir(directory)
        self._undo = [u for u in self._undo if not (u.kind == "rename" and u.path == directory)]
