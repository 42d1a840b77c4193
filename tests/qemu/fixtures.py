"""Session-wide fixtures of the QEMU board tests (tests/test_qemu_*.py), loaded by
tests/conftest.py as a pytest plugin.

Why: building the board (kernel copy, two ext4 slots, boot.scr, FAT, GPT) and booting it are the
cost of these tests; the U-Boot, agent and GRUB modules used to build a board each, and the
agent tests booted the factory image once more each. Here the board is built once per session
and the untouched board is booted once per session; every test still works on its own copy of
the disk (``fresh_disk``: a sparse, reflinked where the filesystem can, copy of ~30 MiB of data),
so no test sees what another one wrote.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from qemu.board import BoardFiles, build_board, missing_tools
from qemu.machine import Boot, boot


def fresh_disk(source: Path, directory: Path, name: str = "disk.img") -> Path:
    """A private copy of a board disk for one test: ``cp --sparse=always --reflink=auto``
    (zero runs stay holes, data blocks are shared where the filesystem supports reflinks)."""
    disk = directory / name
    if shutil.which("cp"):
        subprocess.run(
            ["cp", "--sparse=always", "--reflink=auto", str(source), str(disk)],
            check=True,
            timeout=60,
        )
    else:  # pragma: no cover - coreutils is always there on the Debian hosts we support
        shutil.copyfile(source, disk)
    return disk


@dataclass(frozen=True)
class FactoryBoot:
    """The untouched board (default environment, slot a committed) powered on once with
    U-Boot's own autoboot: the disk afterwards and what its init printed."""

    disk: Path
    boot: Boot


@pytest.fixture(scope="session")
def qemu_board(tmp_path_factory: pytest.TempPathFactory) -> BoardFiles:
    """The QEMU board, built once for the whole session (tests/qemu/board.py)."""
    if missing := missing_tools():
        pytest.skip("QEMU board tools not installed: " + ", ".join(missing))
    return build_board(tmp_path_factory.mktemp("qemu-board"))


@pytest.fixture(scope="session")
def qemu_factory_boot(
    qemu_board: BoardFiles, tmp_path_factory: pytest.TempPathFactory
) -> FactoryBoot:
    """The factory board's first power-on, once per session (``fast=False``: nothing typed at
    U-Boot's prompt, its standard autoboot finds boot.scr). A committed boot reads only slot a
    and never writes the disk, so its kernel command line is the one any board with this
    slot a and this environment boots with, whatever slot b holds."""
    directory = tmp_path_factory.mktemp("qemu-factory-boot")
    disk = fresh_disk(qemu_board.disk, directory)
    result = boot(disk, fast=False, log_file=directory / "serial-1.log")
    return FactoryBoot(disk, result)
