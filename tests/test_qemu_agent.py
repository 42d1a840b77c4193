"""The agent updates the QEMU board through a real server, and real U-Boot boots the result.

The agent runs on the host against the board's own storage: its two slot partitions (copied
out of the disk image and back, as ``slots = "block"`` devices) and U-Boot's ``otaguard.env``
(copied out of the FAT boot partition and back); what the board booted reaches it as the
kernel command line the board printed. The release is the raw ext4 root filesystem of version
2.0.0 (kernel + busybox initramfs), published zstd-compressed. Then:

(a) the trial boot is confirmed (``otaguard agent confirm``): slot b boots committed and the
    server records the deployment as succeeded;
(b) nothing confirms the trial boot (its health check failed, so otaguard-confirm.service never
    ran): U-Boot counts the trial boots, falls back to slot a after ``bootlimit``, and the
    agent, starting on slot a, reports ``rolled_back`` to the server.

The board is the session's (tests/qemu/fixtures.py), and so is its factory boot: the agent's
first cycle reads the command line that boot printed (1.0.0, slot a, committed; a committed
boot writes nothing on the disk, tests/test_qemu_boot.py checks it), rather than every test
powering the factory image on again. The rollback scenario is provisioned with ``bootlimit``
2 (one unconfirmed trial boot is retried, then U-Boot falls back); the count up to the default
limit of 3 is tests/test_qemu_boot.py's.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from typer.testing import CliRunner

from kit.agent import write_agent_toml
from otaguard.cli.main import app
from otaguard.demo import HARDWARE, Demo
from otaguard.device.bootloader import DEFAULT_BOOTLIMIT
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.roles import TARGETS
from qemu.board import ENV_SIZE, BoardFiles, missing_tools
from qemu.fixtures import FactoryBoot, fresh_disk
from qemu.machine import (
    Boot,
    boot,
    boot_env,
    boot_to_handover,
    read_partition,
    write_partition,
)

pytestmark = pytest.mark.skipif(
    bool(missing_tools()),
    reason="QEMU board tools not installed: " + ", ".join(missing_tools()),
)
runner = CliRunner()
OLD, NEW = "1.0.0", "2.0.0"


ROLLBACK_BOOTLIMIT = 2


@pytest.fixture
def board(qemu_board: BoardFiles) -> BoardFiles:
    return qemu_board


@dataclass
class Board:
    """The board's disk, and the host-side copies of its storage the agent works on."""

    disk: Path
    work: Path

    def pull(self) -> None:
        """Board to host: slot partitions and the boot environment file."""
        for slot in ("a", "b"):
            read_partition(self.disk, f"slot_{slot}", self.work / f"slot_{slot}.img")
        with boot_env(self.disk) as env:
            shutil.copyfile(env.paths[0], self.work / "otaguard.env")

    def push(self) -> None:
        """Host to board: what the agent wrote."""
        for slot in ("a", "b"):
            write_partition(self.disk, f"slot_{slot}", self.work / f"slot_{slot}.img")
        with boot_env(self.disk) as env:
            shutil.copyfile(self.work / "otaguard.env", env.paths[0])

    def power_on(self) -> Boot:
        count = len(list(self.work.glob("serial-*.log")))
        result = boot(self.disk, log_file=self.work / f"serial-{count + 1}.log")
        (self.work / "cmdline").write_text(result.cmdline + "\n")
        self.pull()
        return result


def agent(toml: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["agent", *args, "--config", str(toml)])
    return result.exit_code, result.output


def installed_on_trial(
    d: Demo, board: BoardFiles, factory: FactoryBoot, work: Path, bootlimit: int | None = None
) -> tuple[Board, Path, int, str]:
    """A provisioned board running 1.0.0 from slot a (slot b erased; ``bootlimit`` written in
    its environment if given), 2.0.0 deployed to it, installed by the agent and booted once on
    trial by U-Boot."""
    _, v1 = d.release(OLD)
    artifact = work / "rootfs-2.0.0.ext4.zst"
    artifact.write_bytes(zstandard.ZstdCompressor().compress(board.slot_images[NEW].read_bytes()))
    assert d.repo is not None
    assert d.api is not None
    name = f"{HARDWARE}/{artifact.name}"
    d.repo.add_target(artifact, name, ReleaseInfo(NEW, (HARDWARE,), 1))
    for signer in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, signer)
    d.api.publish(d.repo)
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    dev.close()  # from here on, the agent works on the QEMU board's storage
    disk = fresh_disk(board.disk, work)
    (work / "empty").write_bytes(b"")
    write_partition(disk, "slot_b", work / "empty")
    if bootlimit is not None:
        with boot_env(disk) as env:
            env.update(bootlimit=str(bootlimit))
    b = Board(disk, work)
    toml = write_agent_toml(
        dev,
        slots="block",
        slot_a=work / "slot_a.img",
        slot_b=work / "slot_b.img",
        uboot_env=[work / "otaguard.env"],
        uboot_env_size=ENV_SIZE,
        cmdline_file=work / "cmdline",
    )
    first = factory.boot  # this disk's slot a and environment, powered on once per session
    assert (first.version, first.slot, first.trial) == (OLD, "a", False)
    (work / "cmdline").write_text(first.cmdline + "\n")
    b.pull()
    dep_id = d.deploy(name)
    code, out = agent(toml, "run", "--once")
    assert code == 0, out
    b.push()
    trial = b.power_on()
    assert (trial.version, trial.slot, trial.trial) == (NEW, "b", True)
    return b, toml, dep_id, dev.config.device_id


def test_qemu_agent_update_confirmed_stays(
    demo_world: Demo, board: BoardFiles, qemu_factory_boot: FactoryBoot, tmp_path: Path
) -> None:
    d = demo_world
    b, toml, dep_id, device_id = installed_on_trial(d, board, qemu_factory_boot, tmp_path)
    code, out = agent(toml, "confirm")
    assert code == 0, out
    b.push()
    committed = b.power_on()
    assert (committed.version, committed.slot, committed.trial) == (NEW, "b", False)
    code, out = agent(toml, "run", "--once")  # delivers the reports the confirm kept
    assert code == 0, out
    assert d.api is not None
    detail = d.api.device(device_id)
    assert (detail["current_version"], detail["active_slot"]) == (NEW, "b")
    assert [e["event"] for e in detail["events"]][-2:] == ["booted", "committed"]
    statuses = {t["device_id"]: t["status"] for t in d.api.deployment_devices(dep_id)}
    assert statuses == {device_id: "succeeded"}


def test_qemu_unconfirmed_update_falls_back_and_server_hears_rolled_back(
    demo_world: Demo, board: BoardFiles, qemu_factory_boot: FactoryBoot, tmp_path: Path
) -> None:
    d = demo_world
    b, toml, dep_id, device_id = installed_on_trial(
        d, board, qemu_factory_boot, tmp_path, bootlimit=ROLLBACK_BOOTLIMIT
    )
    assert ROLLBACK_BOOTLIMIT < DEFAULT_BOOTLIMIT  # fewer boots; the default is counted elsewhere
    for _ in range(2, ROLLBACK_BOOTLIMIT + 1):  # trial boots 2..bootlimit, none confirmed
        again = boot_to_handover(b.disk, log_file=b.work / "serial-handover.log")
        assert (again.slot, again.trial) == ("b", True)  # U-Boot starts b's kernel on trial
    fallback = b.power_on()
    assert (fallback.version, fallback.slot, fallback.trial) == (OLD, "a", False)
    assert "falling back to slot a" in fallback.log
    code, out = agent(toml, "run", "--once")
    assert code == 0, out
    assert d.api is not None
    detail = d.api.device(device_id)
    assert detail["update_state"] == "rolled_back"
    assert (detail["current_version"], detail["active_slot"]) == (OLD, "a")
    assert detail["events"][-1]["event"] == "rolled_back"
    statuses = {t["device_id"]: t["status"] for t in d.api.deployment_devices(dep_id)}
    assert statuses == {device_id: "failed"}
