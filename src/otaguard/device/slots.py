"""A/B slots. ``FileSlots`` simulates them with files; ``BlockDeviceSlots`` writes real block
devices (partitions) by path. Both are written through the ``Storage`` layer so that tests can
inject power cuts at any write."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Protocol

from otaguard.device.storage import FileWriter, Storage
from otaguard.errors import InstallError

SLOTS = ("a", "b")


def other_slot(slot: str) -> str:
    if slot not in SLOTS:
        raise InstallError(f"unknown slot {slot!r}")
    return "b" if slot == "a" else "a"


class Slots(Protocol):
    def path(self, slot: str) -> Path: ...

    @contextmanager
    def open_write(self, slot: str, offset: int) -> Iterator[FileWriter]: ...

    @contextmanager
    def open_read(self, slot: str) -> Iterator[BinaryIO]: ...

    def truncate(self, slot: str, length: int) -> None: ...


class FileSlots:
    """Slots ``slot_a.img`` and ``slot_b.img`` in a directory."""

    def __init__(self, directory: Path, storage: Storage | None = None) -> None:
        self.directory = directory
        self.storage = storage or Storage()
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, slot: str) -> Path:
        other_slot(slot)
        return self.directory / f"slot_{slot}.img"

    @contextmanager
    def open_write(self, slot: str, offset: int) -> Iterator[FileWriter]:
        """Write the slot from ``offset`` (a fresh write, ``offset == 0``, empties it first)."""
        with self.storage.open_update(self.path(slot), offset, truncate=offset == 0) as w:
            yield w

    @contextmanager
    def open_read(self, slot: str) -> Iterator[BinaryIO]:
        path = self.path(slot)
        if not path.exists():
            raise InstallError(f"slot {slot} is empty")
        with open(path, "rb") as fh:
            yield fh

    def truncate(self, slot: str, length: int) -> None:
        self.storage.truncate_file(self.path(slot), length)


class BlockDeviceSlots(FileSlots):
    """Slots that are block devices (``/dev/mmcblk0p2`` ...), given by path; never truncated."""

    def __init__(self, slot_a: Path, slot_b: Path, storage: Storage | None = None) -> None:
        self._paths = {"a": slot_a, "b": slot_b}
        self.storage = storage or Storage()

    def path(self, slot: str) -> Path:
        other_slot(slot)
        return self._paths[slot]

    @contextmanager
    def open_write(self, slot: str, offset: int) -> Iterator[FileWriter]:
        with self.storage.open_update(self.path(slot), offset, create=False) as w:
            yield w

    def truncate(self, slot: str, length: int) -> None:
        """Block devices keep their size; the image header records the payload length."""
