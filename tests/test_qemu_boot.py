"""Real U-Boot (Debian ``u-boot-qemu``) runs OTAGuard's boot script (packaging/u-boot/boot.cmd)
on the QEMU board against a boot environment written by OTAGuard's own ``UBootEnv``, exactly as
the agent writes it: the default environment boots slot a committed; a switch to slot b on trial
boots b with ``otaguard.trial=1`` and counts the boot in the environment; a commit makes b
boot committed; a b that is never confirmed is abandoned after ``bootlimit`` trial boots and
U-Boot falls back to a, leaving an environment from which the agent's ``boot_event`` concludes
``rolled_back``. Every boot is a real kernel reaching its init (``OTAGUARD-BOOT`` on ttyS0).

The board is built once per session and its factory boot runs once per session
(tests/qemu/fixtures.py, shared with the agent and GRUB tests); each test boots its own copy of
the disk.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from otaguard.agent.layout import booted_slot
from otaguard.agent.statemachine import BootFacts, Event, State, boot_event, next_state
from otaguard.device.bootloader import DEFAULT_BOOTLIMIT, default_env
from qemu.board import PARTUUIDS, BoardFiles, missing_tools
from qemu.fixtures import FactoryBoot, fresh_disk
from qemu.machine import (
    Boot,
    Handover,
    boot,
    boot_env,
    boot_to_handover,
    env_file_bytes,
    fw_printenv,
    read_env,
    read_partition,
    write_partition,
)

pytestmark = pytest.mark.skipif(
    bool(missing_tools()),
    reason="QEMU board tools not installed: "
    + ", ".join(missing_tools())
    + " (scripts/system-deps.sh installs them)",
)

OLD, NEW = "1.0.0", "2.0.0"
ATTEMPT = "5e1ec7ed"


@pytest.fixture
def board(qemu_board: BoardFiles) -> BoardFiles:
    return qemu_board


def boot_logged(disk: Path, *, fast: bool = True) -> Boot:
    count = len(list(disk.parent.glob("serial-*.log")))
    return boot(disk, fast=fast, log_file=disk.parent / f"serial-{count + 1}.log")


def handover_logged(disk: Path) -> Handover:
    count = len(list(disk.parent.glob("serial-*.log")))
    return boot_to_handover(disk, log_file=disk.parent / f"serial-{count + 1}.log")


def switch_to_trial(disk: Path, slot: str) -> None:
    """The agent's install step (agent.py ``_install``): new slot, on trial, count from 0."""
    with boot_env(disk) as env:
        env.update(boot_slot=slot, upgrade_available="1", bootcount="0", ota_attempt=ATTEMPT)


def commit(disk: Path) -> None:
    """The agent's commit step (agent.py ``_commit``)."""
    with boot_env(disk) as env:
        env.update(upgrade_available="0", bootcount="0")


def agent_facts(disk: Path, cmdline: str, target: str, tmp_path: Path) -> BootFacts:
    """What the agent learns after this boot (agent.py ``_facts``): the booted slot from the
    kernel command line (agent/layout.py ``booted_slot``), the rest from the environment."""
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    slot = booted_slot(tmp_path / "cmdline")
    env = read_env(disk)
    return BootFacts(
        on_target=slot == target,
        trial=env.get("upgrade_available") == "1" and env.get("boot_slot") == slot,
        fell_back=False,
        switch_done=env.get("ota_attempt") == ATTEMPT,
        env_on_target=env.get("boot_slot") == target and env.get("upgrade_available") == "1",
    )


@pytest.fixture(scope="module")
def trial_boot(
    qemu_board: BoardFiles, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Boot]:
    """Slot b switched on trial by our code, then booted once: (disk, that boot)."""
    disk = fresh_disk(qemu_board.disk, tmp_path_factory.mktemp("trial"))
    switch_to_trial(disk, "b")
    return disk, boot_logged(disk)


@pytest.fixture
def after_trial(trial_boot: tuple[Path, Boot], tmp_path: Path) -> Path:
    return fresh_disk(trial_boot[0], tmp_path)


def test_qemu_default_env_boots_slot_a_committed(
    board: BoardFiles,
    qemu_factory_boot: FactoryBoot,
    tmp_path: Path,
    report_figure: Callable[[str], None],
) -> None:
    # The untouched board, booted once per session by the fixture with U-Boot's own autoboot
    # (nothing typed at its prompt): it finds boot.scr by itself.
    disk, result = qemu_factory_boot.disk, qemu_factory_boot.boot
    before = env_file_bytes(board.disk)
    assert (result.version, result.slot, result.trial) == (OLD, "a", False)
    report_figure(
        f"QEMU board, power-on to init's poweroff (U-Boot autoboot): {result.seconds:.1f} s"
    )
    assert "otaguard.slot=a" in result.cmdline.split()
    assert f"root=PARTUUID={PARTUUIDS['slot_a']}" in result.cmdline.split()
    (tmp_path / "cmdline").write_text(result.cmdline)
    assert booted_slot(tmp_path / "cmdline") == "a"
    # A committed boot never writes the environment, nor anything else on the disk (what lets
    # the agent tests reuse this boot's command line: tests/qemu/fixtures.py).
    assert env_file_bytes(disk) == before
    assert disk.read_bytes() == board.disk.read_bytes()
    assert read_env(disk) == default_env("a")
    # What booted is the raw ext4 release the board was built from, byte for byte.
    read_partition(disk, "slot_a", tmp_path / "slot_a.img")
    assert (tmp_path / "slot_a.img").read_bytes() == board.slot_images[OLD].read_bytes()


def test_qemu_trial_boots_b_and_counts_the_boot(
    trial_boot: tuple[Path, Boot], tmp_path: Path
) -> None:
    disk, result = trial_boot
    assert (result.version, result.slot, result.trial) == (NEW, "b", True)
    assert f"root=PARTUUID={PARTUUIDS['slot_b']}" in result.cmdline.split()
    expected = default_env("b") | {
        "upgrade_available": "1",
        "bootcount": "1",
        "ota_attempt": ATTEMPT,
    }
    assert read_env(disk) == expected  # U-Boot's `env export -c`, read by our UBootEnv
    if shutil.which("fw_printenv"):
        assert fw_printenv(disk) == expected  # ...and by libubootenv
    facts = agent_facts(disk, result.cmdline, "b", tmp_path)
    assert boot_event(State.REBOOT_PENDING, facts) is Event.BOOTED_NEW


def test_qemu_committed_b_boots_without_trial(after_trial: Path) -> None:
    commit(after_trial)
    with boot_env(after_trial) as env:
        # Variables other than OTAGuard's are not imported: the environment file cannot
        # change what U-Boot boots or the kernel's arguments.
        env.update(otg_extra_args="init=/bin/sh", otg_kernel="/nonexistent", bootargs="x")
    before = env_file_bytes(after_trial)
    result = boot_logged(after_trial)
    assert (result.version, result.slot, result.trial) == (NEW, "b", False)
    assert "init=/bin/sh" not in result.cmdline
    assert env_file_bytes(after_trial) == before
    assert read_env(after_trial)["upgrade_available"] == "0"


def test_qemu_unconfirmed_b_falls_back_to_a_after_bootlimit(
    after_trial: Path, tmp_path: Path
) -> None:
    # The fixture made trial boot 1 (to b's init); boots 2..bootlimit stay on b, each one
    # counted (stopped at U-Boot's handover to b's kernel: machine.boot_to_handover).
    for count in range(2, DEFAULT_BOOTLIMIT + 1):
        handover = handover_logged(after_trial)
        assert (handover.slot, handover.trial, handover.bootcount) == ("b", True, str(count))
        assert f"root=PARTUUID={PARTUUIDS['slot_b']}" in handover.cmdline.split()
        assert "otaguard.trial=1" in handover.cmdline.split()
        assert read_env(after_trial)["bootcount"] == str(count)
    result = boot_logged(after_trial)  # the one after bootlimit: to a's init
    assert (result.version, result.slot, result.trial) == (OLD, "a", False)
    assert "falling back to slot a" in result.log
    env = read_env(after_trial)
    assert env == default_env("a") | {"ota_attempt": ATTEMPT}
    if shutil.which("fw_printenv"):
        assert fw_printenv(after_trial) == env
    # The agent, journaled in trial (or still waiting for the reboot), sees the old slot run.
    facts = agent_facts(after_trial, result.cmdline, "b", tmp_path)
    for state in (State.REBOOT_PENDING, State.TRIAL, State.HEALTH_CHECK):
        event = boot_event(state, facts)
        assert event is Event.BOOTED_OLD
        assert next_state(state, event) is State.ROLLED_BACK


def test_qemu_corrupt_env_boots_slot_a(board: BoardFiles, tmp_path: Path) -> None:
    disk = fresh_disk(board.disk, tmp_path)
    switch_to_trial(disk, "b")
    with boot_env(disk) as env:
        raw = bytearray(env.paths[0].read_bytes())
        raw[10] ^= 0xFF  # CRC no longer matches: U-Boot must not trust a single variable
        env.paths[0].write_bytes(bytes(raw))
    result = boot_logged(disk)
    assert (result.slot, result.trial, result.version) == ("a", False, OLD)
    assert "no valid boot environment" in result.log


def test_qemu_trial_slot_that_does_not_load_falls_back_at_once(
    board: BoardFiles, tmp_path: Path
) -> None:
    disk = fresh_disk(board.disk, tmp_path)
    switch_to_trial(disk, "b")
    (tmp_path / "empty").write_bytes(b"")
    write_partition(disk, "slot_b", tmp_path / "empty")  # slot b erased: no kernel to load
    result = boot_logged(disk)
    assert (result.slot, result.trial, result.version) == ("a", False, OLD)
    assert "slot b (slot_b) does not load; booting slot a" in result.log
    assert read_env(disk) == default_env("a") | {"ota_attempt": ATTEMPT}
