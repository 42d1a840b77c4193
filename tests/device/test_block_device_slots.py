"""``BlockDeviceSlots`` on a real block device path: two loop devices (``losetup``) when the
machine allows it, and the same code on pre-sized files opened the same way (never truncated).
The real agent streams the update into the inactive device over loopback TLS, reads it back to
verify, switches, reboots and commits; a flash that corrupts what was written is caught by the
read-back."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from otaguard.agent.statemachine import State
from otaguard.demo import Demo
from otaguard.device.slots import BlockDeviceSlots
from otaguard.device.storage import FileWriter
from otaguard.sim.device import SimulatedDevice

DEVICE_SIZE = 1 << 20  # 1 MiB partitions; the demo images are 64 KiB + header
FILL = b"\xee"


def _losetup_reason() -> str | None:
    if shutil.which("losetup") is None:
        return "losetup not installed (util-linux)"
    if os.geteuid() != 0:
        return "losetup needs root to attach loop devices"
    return None


@contextmanager
def backing_devices(tmp_path: Path, kind: str) -> Iterator[tuple[Path, Path, list[Path]]]:
    """Two partitions of DEVICE_SIZE bytes filled with FILL: loop devices or plain files."""
    files = []
    for name in ("part_a", "part_b"):
        f = tmp_path / f"{name}.img"
        f.write_bytes(FILL * DEVICE_SIZE)
        files.append(f)
    if kind == "file":
        yield files[0], files[1], files
        return
    reason = _losetup_reason()
    if reason:
        pytest.skip(reason)
    attached: list[str] = []
    try:
        for f in files:
            proc = subprocess.run(
                ["losetup", "--find", "--show", str(f)],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            if proc.returncode != 0:
                pytest.skip(f"losetup cannot attach a loop device here: {proc.stderr.strip()}")
            attached.append(proc.stdout.strip())
        yield Path(attached[0]), Path(attached[1]), files
    finally:
        for dev in attached:
            subprocess.run(["losetup", "--detach", dev], timeout=20, check=False)


def on_block_slots(dev: SimulatedDevice, slots: BlockDeviceSlots, image: bytes) -> None:
    """Move a provisioned device onto block-device slots: the factory image goes into slot a."""
    with open(slots.path("a"), "r+b", buffering=0) as fh:
        fh.write(image)
        os.fsync(fh.fileno())
    dev.slots = slots
    dev.bootloader.slots = slots


class RottingSlots(BlockDeviceSlots):
    """A flash that acknowledges a write as durable but stores a flipped bit: after the first
    ``sync`` of a slot write, byte 100 on the medium differs from what was written. (The
    agent reads each region back once it is durable, so that is when the medium must already
    hold the wrong byte.)"""

    @contextmanager
    def open_write(self, slot: str, offset: int) -> Iterator[FileWriter]:
        with super().open_write(slot, offset) as w:
            real_sync = w.sync
            rotted = False

            def sync() -> None:
                nonlocal rotted
                real_sync()
                if not rotted:
                    rotted = True
                    fd = os.open(self.path(slot), os.O_RDWR)
                    try:
                        byte = os.pread(fd, 1, 100)
                        os.pwrite(fd, bytes([byte[0] ^ 0x01]), 100)
                        os.fsync(fd)
                    finally:
                        os.close(fd)

            w.sync = sync  # type: ignore[method-assign]
            yield w


@pytest.mark.parametrize("kind", ["loop", "file"])
def test_update_streams_into_a_block_device_and_commits(
    demo_world: Demo, tmp_path: Path, kind: str
) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, v2 = d.release("2.0.0", security_version=1)
    with backing_devices(tmp_path, kind) as (part_a, part_b, files):
        if kind == "loop":
            assert part_a.is_block_device()
            assert part_b.is_block_device()
        d.devices = 1
        d.provision_fleet(v1)
        (dev,) = d.fleet
        slots = BlockDeviceSlots(part_a, part_b, dev.storage)
        on_block_slots(dev, slots, v1)
        assert dev.reboot().action == "idle"
        assert (dev.version, dev.slot) == ("1.0.0", "a")

        d.deploy(v2_name)
        assert dev.run_once().reboot
        out = dev.reboot()
        assert out.detail == "committed"
        assert (dev.version, dev.slot) == ("2.0.0", "b")
        with open(part_b, "rb") as fh:
            written = fh.read(DEVICE_SIZE)
        assert written[: len(v2)] == v2
        # Never truncated: the partition keeps its size and the bytes after the image.
        assert len(written) == DEVICE_SIZE
        assert written[len(v2) :] == FILL * (DEVICE_SIZE - len(v2))
        assert all(f.stat().st_size == DEVICE_SIZE for f in files)
        assert dev.boot is not None
        assert dev.boot.header.version == "2.0.0"


@pytest.mark.parametrize("kind", ["loop", "file"])
def test_read_back_catches_a_flash_that_corrupts_the_written_image(
    demo_world: Demo, tmp_path: Path, kind: str
) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    with backing_devices(tmp_path, kind) as (part_a, part_b, _files):
        d.devices = 1
        d.provision_fleet(v1)
        (dev,) = d.fleet
        env_before = dev.env.read()
        on_block_slots(dev, RottingSlots(part_a, part_b, dev.storage), v1)
        dev.reboot()
        d.deploy(v2_name)
        out = dev.run_once()
        assert out.action == "failed"
        assert "does not match the maker-signed sha256" in out.detail
        assert dev.env.read() == env_before  # never switched
        assert dev.agent is not None
        assert dev.agent.journal.state is State.IDLE
        assert (dev.reboot().action, dev.version, dev.slot) == ("idle", "1.0.0", "a")
