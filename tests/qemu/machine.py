"""Boot a QEMU board disk under real U-Boot and read what happened: the line the slot's init
printed on the serial console, and the U-Boot environment in the boot partition afterwards.

QEMU runs with TCG (KVM stops Debian's U-Boot with an internal error on these machines), no
network, ``-no-reboot``; the init powers off, which ends QEMU. Every run has a deadline and QEMU
is killed when it passes or anything fails: no QEMU outlives its ``boot()`` call.

``fast`` (the default) stops U-Boot's 2 s autoboot countdown and runs its standard distro boot
(``boot``) with ``boot_targets`` narrowed to the virtio disk, skipping the USB/SCSI/network
scans: the same path that finds ``boot.scr`` and runs it, a few seconds sooner.

``boot_to_handover`` powers the board off as soon as U-Boot hands over to the kernel: the boot
script has decided and saved everything by then (slot, trial, bootcount), and the kernel's
boot to init, two thirds of a boot's CPU under TCG, is skipped. The tests use it only for the
intermediate trial boots of a fallback sequence; every boot whose outcome a test asserts
reaches the init.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from otaguard.device.bootenv import UBootEnv
from otaguard.device.grubenv import GrubEnv
from qemu.board import ENV_FILE, ENV_SIZE, GRUB_ENV_FILE, MIB, UBOOT_ROM, partition_range

BOOT_LINE = re.compile(rb"OTAGUARD-BOOT version=(\S+) slot=(\S+) trial=(\S+)")
CMDLINE_LINE = re.compile(rb"OTAGUARD-CMDLINE ([^\r\n]*)")
AUTOBOOT_PROMPT = b"Hit any key to stop autoboot"
UBOOT_PROMPT = b"=> "
FAST_BOOT_COMMAND = b"setenv boot_targets virtio0; boot\n"
# boot.cmd's last word before zboot, and U-Boot's own lines as it hands over to the kernel.
HANDOVER_LINE = re.compile(rb"OTAGuard: booting slot (\S+) \(trial=(\d), bootcount=(\S*)\)")
UBOOT_CMDLINE = re.compile(rb'Kernel command line: "([^"]*)"')
STARTING_KERNEL = b"Starting kernel"
BOOT_PARTITION_OFFSET = partition_range("boot")[0]


@dataclass(frozen=True)
class Boot:
    version: str
    slot: str
    trial: bool
    cmdline: str
    log: str  # the whole serial console
    seconds: float  # power-on to power-off


@dataclass(frozen=True)
class Handover:
    """What U-Boot decided on a boot stopped at the kernel handover."""

    slot: str
    trial: bool
    bootcount: str
    cmdline: str
    log: str
    seconds: float


@dataclass
class UBootKeys:
    """What a fast boot types at U-Boot: a key at the autoboot countdown, then the boot command
    once U-Boot shows its prompt, not before: a command typed while U-Boot is still stopping
    its countdown can be cut (it flushes its input), leaving the board at the prompt until the
    deadline; on a loaded machine a fixed pause was not always long enough."""

    stage: int  # 0: waiting for the countdown, 1: for the prompt, 2: nothing more to type
    mark: int = 0

    def step(self, log: bytes) -> bytes:
        if self.stage == 0 and AUTOBOOT_PROMPT in log:
            self.stage, self.mark = 1, len(log)
            return b"\n"
        if self.stage == 1 and UBOOT_PROMPT in log[self.mark :]:
            self.stage = 2
            return FAST_BOOT_COMMAND
        return b""


class BootFailed(AssertionError):
    """The board did not reach its init's OTAGUARD-BOOT line in time."""


def qemu_command(disk: Path, grub: Path | None = None) -> list[str]:
    """U-Boot as the firmware, the disk on virtio; or (``grub``) SeaBIOS starting GRUB as a
    Linux-protocol image, the disk on IDE (GRUB reads it through the BIOS)."""
    firmware = ["-bios", str(UBOOT_ROM)] if grub is None else ["-kernel", str(grub)]
    bus = "virtio" if grub is None else "ide"
    return [
        "qemu-system-x86_64", "-accel", "tcg", "-machine", "pc", "-m", "256", *firmware,
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot",
        "-drive", f"file={disk},if={bus},format=raw",
    ]  # fmt: skip


def last_attempt(log: bytes) -> bytes:
    """The console of the power-on that completed (after any power cycle ``_run`` noted)."""
    return log.rsplit(b"; power-cycled]\n", 1)[-1]


def _parse(log: bytes, seconds: float) -> Boot:
    found = BOOT_LINE.search(log)
    if found is None:
        tail = log[-3000:].decode(errors="replace")
        raise BootFailed(f"no OTAGUARD-BOOT line on the serial console; its end:\n{tail}")
    cmdline = CMDLINE_LINE.search(log)
    version, slot, trial = (g.decode() for g in found.groups())
    return Boot(
        version=version,
        slot=slot,
        trial=trial == "1",
        cmdline=cmdline.group(1).decode().strip() if cmdline else "",
        log=log.decode(errors="replace"),
        seconds=seconds,
    )


def boot(
    disk: Path,
    timeout: float = 120.0,
    *,
    fast: bool = True,
    log_file: Path | None = None,
    grub: Path | None = None,
) -> Boot:
    """Power the board on once, wait for it to power itself off, return what its init said.
    ``grub``: the GRUB loader of a GRUB board (board.build_grub_board) instead of U-Boot."""
    log, seconds = _run(disk, timeout, fast=fast, log_file=log_file, grub=grub, stop_at=None)
    return _parse(last_attempt(log), seconds)


def boot_to_handover(
    disk: Path, timeout: float = 120.0, *, log_file: Path | None = None
) -> Handover:
    """Power the U-Boot board on and off again once U-Boot starts the kernel; return the slot,
    trial state, bootcount and kernel command line the boot script chose."""
    log, seconds = _run(
        disk, timeout, fast=True, log_file=log_file, grub=None, stop_at=STARTING_KERNEL
    )
    found, cmdline = HANDOVER_LINE.search(log), UBOOT_CMDLINE.search(log)
    if found is None or cmdline is None or STARTING_KERNEL not in log:
        tail = log[-3000:].decode(errors="replace")
        raise BootFailed(f"U-Boot did not hand over to a kernel; the console's end:\n{tail}")
    slot, trial, count = (g.decode() for g in found.groups())
    return Handover(
        slot=slot,
        trial=trial == "1",
        bootcount=count,
        cmdline=cmdline.group(1).decode().strip(),
        log=log.decode(errors="replace"),
        seconds=seconds,
    )


#: U-Boot has started boot.scr: from here on it may write the disk, so it is never restarted.
SCRIPT_STARTED = b"## Executing script"
#: Silence before boot.scr that counts as a hung firmware (seen at host load 50+: U-Boot stopped
#: after "Loading Environment" for minutes, before touching the disk), and how often to power
#: it off and on again before giving up.
STALL_SECONDS, STALL_RETRIES = 30.0, 2


class _Stalled(Exception):
    """U-Boot printed nothing for STALL_SECONDS before it ran boot.scr."""


def _run(
    disk: Path,
    timeout: float,
    *,
    fast: bool,
    log_file: Path | None,
    grub: Path | None,
    stop_at: bytes | None,
) -> tuple[bytes, float]:
    """Run QEMU until it exits (the init powered off) or ``stop_at`` appears on the console;
    QEMU is killed on the way out whatever happened. A U-Boot hung before boot.scr (nothing on
    the disk touched yet) is powered off and on again, at most STALL_RETRIES times, noted in
    the log. Returns the console (every attempt) and the seconds of the last attempt."""
    log = bytearray()
    try:
        for attempt in range(STALL_RETRIES + 1):
            stall = STALL_SECONDS if grub is None and attempt < STALL_RETRIES else None
            try:
                seconds = _run_once(
                    disk, timeout, log, fast=fast, grub=grub, stop_at=stop_at, stall=stall
                )
            except _Stalled:
                log += b"\n[harness: U-Boot silent before boot.scr; power-cycled]\n"
                continue
            return bytes(log), seconds
        raise AssertionError("unreachable: the last attempt has no stall limit")
    finally:
        if log_file is not None:
            log_file.write_bytes(bytes(log))


def _run_once(
    disk: Path,
    timeout: float,
    log: bytearray,
    *,
    fast: bool,
    grub: Path | None,
    stop_at: bytes | None,
    stall: float | None,
) -> float:
    """One power-on; the console is appended to ``log``. Returns the seconds it ran."""
    proc = subprocess.Popen(
        qemu_command(disk, grub), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdin is not None
    assert proc.stdout is not None
    first = len(log)
    keys = UBootKeys(stage=0 if fast and grub is None else 2)
    start = last_output = time.monotonic()
    deadline = start + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break  # QEMU exited: the init powered off (or something died)
                log += chunk
                last_output = time.monotonic()
                if stop_at is not None and stop_at in log[first:]:
                    break
            if typed := keys.step(bytes(log[first:])):
                proc.stdin.write(typed)
                proc.stdin.flush()
            silent = time.monotonic() - last_output
            if stall is not None and silent > stall and SCRIPT_STARTED not in log[first:]:
                raise _Stalled()
        else:
            raise BootFailed(
                f"board still running after {timeout:.0f} s:\n{log[-3000:].decode(errors='replace')}"
            )
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdin.close()
        proc.stdout.close()
    return time.monotonic() - start


def _mtools_image(disk: Path) -> str:
    return f"{disk}@@{BOOT_PARTITION_OFFSET}"


def _mtools(*args: str) -> None:
    proc = subprocess.run(list(args), capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {proc.stderr.decode(errors='replace')}")


@contextlib.contextmanager
def boot_env(disk: Path) -> Iterator[UBootEnv]:
    """The board's otaguard.env as an ``otaguard.device.bootenv.UBootEnv`` (the agent's class);
    copied out of the FAT partition with mcopy, and back in when the block ends."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / ENV_FILE
        _mtools("mcopy", "-n", "-i", _mtools_image(disk), f"::{ENV_FILE}", str(local))
        env = UBootEnv([local], ENV_SIZE)
        before = local.read_bytes()
        yield env
        if local.read_bytes() != before:
            _mtools("mcopy", "-o", "-i", _mtools_image(disk), str(local), f"::{ENV_FILE}")


@contextlib.contextmanager
def grub_env(disk: Path) -> Iterator[GrubEnv]:
    """The GRUB board's grub/grubenv as an ``otaguard.device.grubenv.GrubEnv``, like
    ``boot_env``."""
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "grubenv"
        _mtools("mcopy", "-n", "-i", _mtools_image(disk), f"::{GRUB_ENV_FILE}", str(local))
        before = local.read_bytes()
        yield GrubEnv(local)
        if local.read_bytes() != before:
            _mtools("mcopy", "-o", "-i", _mtools_image(disk), str(local), f"::{GRUB_ENV_FILE}")


def read_env(disk: Path) -> dict[str, str]:
    with boot_env(disk) as env:
        return env.read()


def env_file_bytes(disk: Path) -> bytes:
    with boot_env(disk) as env:
        return env.paths[0].read_bytes()


def fw_printenv(disk: Path) -> dict[str, str]:
    """The environment as libubootenv's ``fw_printenv`` reads it (single copy, 0x4000)."""
    with boot_env(disk) as env, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "fw_env.config"
        config.write_text(env.fw_env_config())
        proc = subprocess.run(
            ["fw_printenv", "-c", str(config)], capture_output=True, text=True, timeout=20
        )
    if proc.returncode != 0:
        raise AssertionError(f"fw_printenv: {proc.stderr}")
    return dict(line.split("=", 1) for line in proc.stdout.splitlines())


def write_env(disk: Path, values: Mapping[str, str]) -> None:
    with boot_env(disk) as env:
        env.write(values)


def read_partition(disk: Path, name: str, out: Path) -> None:
    """Copy partition ``name`` (``slot_a``, ``slot_b``) out of the disk into a file: a slot the
    agent can write as a block device (``slots = "block"``), then ``write_partition`` back."""
    offset, size = partition_range(name)
    with open(disk, "rb") as src, open(out, "wb") as dst:
        src.seek(offset)
        for _ in range(size // MIB):
            dst.write(src.read(MIB))


def write_partition(disk: Path, name: str, image: Path) -> None:
    """Put ``image`` (at most the partition's size) into partition ``name``, zero-filled."""
    offset, size = partition_range(name)
    data = image.read_bytes()
    if len(data) > size:
        raise ValueError(f"{image} is {len(data)} bytes, partition {name} holds {size}")
    with open(disk, "r+b") as dst:
        dst.seek(offset)
        dst.write(data + bytes(size - len(data)))
