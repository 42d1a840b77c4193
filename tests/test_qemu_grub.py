"""GRUB (Debian ``grub-pc-bin``, i386-pc) runs OTAGuard's GRUB snippet (packaging/grub/grub.cfg,
as shipped) on the QEMU board's slots, against a grubenv written by OTAGuard's ``GrubEnv`` as the
agent writes it: slot b on trial boots with ``otaguard.trial=1`` and GRUB's ``save_env`` counts
the boot; committed, b boots without trial; never confirmed, GRUB falls back to a after
``bootlimit`` trial boots.

Marked slow (``make test-slow``): GRUB reads the 14 MB kernel through the emulated BIOS, about
three times the CPU of a U-Boot boot, and the default suite keeps its QEMU set to the U-Boot
board (tests/test_qemu_boot.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otaguard.device.bootloader import default_env
from qemu.board import (
    BoardFiles,
    GrubBoardFiles,
    build_grub_board,
    missing_grub_tools,
    missing_tools,
)
from qemu.fixtures import fresh_disk
from qemu.machine import Boot, boot, grub_env

MISSING = missing_tools() + missing_grub_tools()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING),
        reason="QEMU/GRUB board tools not installed: "
        + ", ".join(MISSING)
        + " (scripts/system-deps.sh installs them)",
    ),
]

OLD, NEW = "1.0.0", "2.0.0"
ATTEMPT = "9a0b1c2d"


@pytest.fixture(scope="module")
def grub_board(qemu_board: BoardFiles) -> GrubBoardFiles:
    """The session's board (tests/qemu/fixtures.py) with GRUB in front of its slots."""
    return build_grub_board(qemu_board)


def boot_grub(board: GrubBoardFiles, disk: Path) -> Boot:
    count = len(list(disk.parent.glob("serial-*.log")))
    log = disk.parent / f"serial-{count + 1}.log"
    return boot(disk, timeout=120, grub=board.loader, log_file=log)


def env_of(disk: Path) -> dict[str, str]:
    with grub_env(disk) as env:
        return env.read()


@pytest.fixture(scope="module")
def grub_trial(
    grub_board: GrubBoardFiles, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Boot]:
    """Slot b switched on trial (agent.py ``_install``) with bootlimit 2, booted once."""
    disk = fresh_disk(grub_board.disk, tmp_path_factory.mktemp("grub-trial"))
    with grub_env(disk) as env:
        env.update(bootlimit="2")  # provisioning's choice; keeps this slow test shorter
        env.update(boot_slot="b", upgrade_available="1", bootcount="0", ota_attempt=ATTEMPT)
    return disk, boot_grub(grub_board, disk)


def test_qemu_grub_trial_boots_b_and_counts_the_boot(grub_trial: tuple[Path, Boot]) -> None:
    disk, result = grub_trial
    assert (result.version, result.slot, result.trial) == (NEW, "b", True)
    assert "root=LABEL=rootfs_b" in result.cmdline.split()
    expected = default_env("b") | {
        "upgrade_available": "1",
        "bootcount": "1",
        "bootlimit": "2",
        "ota_attempt": ATTEMPT,
    }
    assert env_of(disk) == expected


def test_qemu_grub_committed_b_boots_without_trial(
    grub_board: GrubBoardFiles, grub_trial: tuple[Path, Boot], tmp_path: Path
) -> None:
    disk = fresh_disk(grub_trial[0], tmp_path)
    with grub_env(disk) as env:
        env.update(upgrade_available="0", bootcount="0")  # agent.py ``_commit``
    result = boot_grub(grub_board, disk)
    assert (result.version, result.slot, result.trial) == (NEW, "b", False)
    assert env_of(disk)["upgrade_available"] == "0"


def test_qemu_grub_unconfirmed_b_falls_back_to_a(
    grub_board: GrubBoardFiles, grub_trial: tuple[Path, Boot], tmp_path: Path
) -> None:
    disk = fresh_disk(grub_trial[0], tmp_path)
    second = boot_grub(grub_board, disk)
    assert (second.version, second.slot, second.trial) == (NEW, "b", True)
    assert env_of(disk)["bootcount"] == "2"
    third = boot_grub(grub_board, disk)
    assert (third.version, third.slot, third.trial) == (OLD, "a", False)
    assert "falling back to slot a" in third.log
    assert env_of(disk) == default_env("a") | {"bootlimit": "2", "ota_attempt": ATTEMPT}
