"""The QEMU board: a disk image that Debian's real U-Boot (``u-boot-qemu``, qemu-x86) boots
with OTAGuard's boot script, so the A/B logic is proven against a real bootloader, not only
against the simulated one in ``otaguard.device.bootloader``.

Layout (GPT, built without root: no loop mounts, only tools that write image files)::

    1 MiB   boot    FAT  boot.scr (packaging/u-boot/boot.cmd) + otaguard.env (single-copy U-Boot
                         environment, 0x4000 bytes, written by otaguard.device.bootenv)
    9 MiB   slot_a  ext4 /boot/vmlinuz (Debian cloud kernel) + /boot/initrd.img (busybox)
    41 MiB  slot_b  ext4 the same, another version

Each slot's initramfs prints ``OTAGUARD-BOOT version=<v> slot=<s> trial=<t>`` (slot and trial
from ``otaguard.slot=``/``otaguard.trial=`` on the kernel command line, which the boot script
sets) on the serial console and powers off. The slot images are also kept as files: a raw
ext4 release the agent can install into a slot.

The GRUB board (``build_grub_board``) has the same slots behind GRUB (i386-pc, started by QEMU
with ``-kernel``) running packaging/grub/grub.cfg with a grubenv.

Run as a program to build a board: ``python tests/qemu/board.py OUTDIR [--grub]``
(``scripts/build-qemu-board.sh`` does that).
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from otaguard.device.bootenv import UBootEnv
from otaguard.device.bootloader import default_env
from otaguard.device.grubenv import GrubEnv

REPO = Path(__file__).resolve().parents[2]
BOOT_CMD = REPO / "packaging" / "u-boot" / "boot.cmd"
UBOOT_ROM = Path("/usr/lib/u-boot/qemu-x86/u-boot.rom")
KERNEL_PACKAGE = "linux-image-cloud-amd64"  # a metapackage: its Depends names the real one

MIB = 1024 * 1024
ENV_FILE = "otaguard.env"
ENV_SIZE = 0x4000
BOOT_MIB, SLOT_MIB = 8, 32
# (GPT name, start MiB, size MiB): the boot script finds slots by these names.
PARTITIONS = (("boot", 1, BOOT_MIB), ("slot_a", 9, SLOT_MIB), ("slot_b", 9 + SLOT_MIB, SLOT_MIB))
DISK_MIB = 80


def partition_range(name: str) -> tuple[int, int]:
    """(offset, size) in bytes of the partition with GPT name ``name``."""
    for part, start, size in PARTITIONS:
        if part == name:
            return start * MIB, size * MIB
    raise KeyError(name)


PARTUUIDS = {
    "boot": "6f746167-0000-4000-8000-000000000001",
    "slot_a": "6f746167-0000-4000-8000-00000000000a",
    "slot_b": "6f746167-0000-4000-8000-00000000000b",
}
TOOLS = ("qemu-system-x86_64", "mkimage", "mkfs.vfat", "mcopy", "mke2fs", "sfdisk", "cpio")
GRUB_PC = Path("/usr/lib/grub/i386-pc")
GRUB_CFG = REPO / "packaging" / "grub" / "grub.cfg"
GRUB_ENV_FILE = "grub/grubenv"
# Built into GRUB's core.img: the serial console, and the board settings of grub.cfg.
GRUB_EARLY_CFG = """serial --unit=0 --speed=115200
terminal_input serial
terminal_output serial
set otg_args="ro console=ttyS0,115200"
"""
GRUB_MODULES = [
    "biosdisk",
    "part_gpt",
    "fat",
    "ext2",
    "normal",
    "linux",
    "echo",
    "test",
    "loadenv",
    "search",
    "search_label",
    "configfile",
    "serial",
    "terminal",
]

INIT = """#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
/bin/busybox mount -t proc proc /proc
slot=none
trial=none
for word in $(/bin/busybox cat /proc/cmdline); do
  case "$word" in
    otaguard.slot=*) slot="${word#otaguard.slot=}" ;;
    otaguard.trial=*) trial="${word#otaguard.trial=}" ;;
  esac
done
echo "OTAGUARD-CMDLINE $(/bin/busybox cat /proc/cmdline)"
echo "OTAGUARD-BOOT version=$(/bin/busybox cat /etc/otaguard-version) slot=$slot trial=$trial"
/bin/busybox poweroff -f
"""


class BoardError(Exception):
    """The board cannot be built (a tool or the kernel package is missing)."""


def missing_tools() -> list[str]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not UBOOT_ROM.is_file():
        missing.append(f"{UBOOT_ROM} (u-boot-qemu)")
    if not Path("/bin/busybox").is_file():
        missing.append("/bin/busybox (busybox-static)")
    return missing


def _run(*args: str | Path, cwd: Path | None = None, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, input=stdin, capture_output=True, timeout=300
    )
    if proc.returncode != 0:
        raise BoardError(f"{' '.join(map(str, args))}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def cache_dir() -> Path:
    """Where the downloaded kernel is kept between runs: ``$OTAGUARD_QEMU_CACHE``, else
    ``$XDG_CACHE_HOME/otaguard/qemu`` (``~/.cache/otaguard/qemu``)."""
    if explicit := os.environ.get("OTAGUARD_QEMU_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "otaguard" / "qemu"


def fetch_kernel(cache: Path) -> Path:
    """A Debian cloud kernel (vmlinuz), downloaded once with ``apt-get download`` and unpacked
    with ``dpkg-deb -x``; nothing is installed on the host. ``OTAGUARD_QEMU_KERNEL`` overrides."""
    if override := os.environ.get("OTAGUARD_QEMU_KERNEL"):
        return Path(override)
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(p for p in cache.glob("vmlinuz-*") if not p.name.endswith(".part"))
    if found:
        return found[-1]
    depends = _run("apt-cache", "depends", KERNEL_PACKAGE).decode()
    names = [ln.split()[-1] for ln in depends.splitlines() if "Depends: linux-image-" in ln]
    if not names:
        raise BoardError(f"apt-cache knows no {KERNEL_PACKAGE} (run apt-get update)")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        _run("apt-get", "download", names[0], cwd=Path(tmp))
        deb = next(Path(tmp).glob("*.deb"))
        _run("dpkg-deb", "-x", deb, Path(tmp) / "root")
        vmlinuz = next((Path(tmp) / "root" / "boot").glob("vmlinuz-*"))
        target, part = cache / vmlinuz.name, cache / f"{vmlinuz.name}.part"
        shutil.copyfile(vmlinuz, part)
        part.rename(target)  # whole or absent: a concurrent or cut build never sees half
    return target


def build_initramfs(version: str, out: Path) -> None:
    """A gzip'd cpio (newc) with busybox-static and the init above; ``version`` in
    /etc/otaguard-version."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for d in ("bin", "dev", "proc", "etc"):
            (root / d).mkdir()
        shutil.copy2("/bin/busybox", root / "bin" / "busybox")
        (root / "init").write_text(INIT)
        (root / "init").chmod(0o755)
        (root / "etc" / "otaguard-version").write_text(version + "\n")
        names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        archive = _run(
            "cpio", "-o", "-H", "newc", "-R", "0:0", "--quiet", cwd=root,
            stdin="\n".join(names).encode() + b"\n",
        )  # fmt: skip
    out.write_bytes(gzip.compress(archive, compresslevel=6, mtime=0))


def build_slot_image(kernel: Path, version: str, label: str, out: Path) -> None:
    """An ext4 root filesystem for one slot: /boot/vmlinuz, /boot/initrd.img, /etc version."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "boot").mkdir()
        (root / "etc").mkdir()
        shutil.copyfile(kernel, root / "boot" / "vmlinuz")
        build_initramfs(version, root / "boot" / "initrd.img")
        (root / "etc" / "otaguard-version").write_text(version + "\n")
        out.unlink(missing_ok=True)
        _run("mke2fs", "-q", "-t", "ext4", "-L", label, "-E", "root_owner=0:0", "-d", root,
             out, f"{SLOT_MIB}M")  # fmt: skip


def build_boot_script(out: Path) -> None:
    _run(REPO / "packaging" / "u-boot" / "build-boot-scr.sh", out, "x86")


def build_boot_partition(script: Path, env: Mapping[str, str] | None, out: Path) -> None:
    """The FAT boot partition: boot.scr and (unless ``env`` is None) otaguard.env."""
    out.unlink(missing_ok=True)
    _run("mkfs.vfat", "-C", "-n", "OTAGBOOT", out, str(BOOT_MIB * 1024))
    _run("mcopy", "-i", out, script, "::boot.scr")
    if env is not None:
        with tempfile.TemporaryDirectory() as tmp:
            env_file = Path(tmp) / ENV_FILE
            UBootEnv([env_file], ENV_SIZE).write(env)
            _run("mcopy", "-i", out, env_file, f"::{ENV_FILE}")


def sfdisk_script() -> str:
    lines = ["label: gpt", "label-id: 6F746167-0000-4000-8000-000000000000", "first-lba: 2048"]
    for name, start, size in PARTITIONS:
        ptype = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" if name == "boot" else "linux"
        lines.append(
            f"start={start}MiB, size={size}MiB, type={ptype}, uuid={PARTUUIDS[name]}, name={name}"
        )
    return "\n".join(lines) + "\n"


def assemble_disk(parts: Mapping[str, Path], out: Path) -> None:
    """Partition table with sfdisk, then each partition image copied in at its offset."""
    out.unlink(missing_ok=True)
    with open(out, "wb") as fh:
        fh.truncate(DISK_MIB * MIB)
    _run("sfdisk", "--quiet", out, stdin=sfdisk_script().encode())
    with open(out, "r+b") as disk:
        for name, start, _ in PARTITIONS:
            disk.seek(start * MIB)
            with open(parts[name], "rb") as src:
                shutil.copyfileobj(src, disk, MIB)


def missing_grub_tools() -> list[str]:
    missing = [] if shutil.which("grub-mkimage") else ["grub-mkimage (grub-common)"]
    if not (GRUB_PC / "lnxboot.img").is_file():
        missing.append(f"{GRUB_PC} (grub-pc-bin)")
    return missing


def build_grub_loader(out: Path) -> None:
    """GRUB (i386-pc) as a Linux-protocol image QEMU starts with ``-kernel``: lnxboot.img
    followed by a core.img with the modules and the early config built in, so nothing has to
    be installed in the disk's boot sector."""
    with tempfile.TemporaryDirectory() as tmp:
        early, core = Path(tmp) / "early.cfg", Path(tmp) / "core.img"
        early.write_text(GRUB_EARLY_CFG)
        _run("grub-mkimage", "-O", "i386-pc", "-c", early, "-p", "(hd0,gpt1)/grub",
             "-o", core, *GRUB_MODULES)  # fmt: skip
        out.write_bytes((GRUB_PC / "lnxboot.img").read_bytes() + core.read_bytes())


def build_grub_boot_partition(env: Mapping[str, str], out: Path) -> None:
    """The FAT boot partition of the GRUB board: grub/grub.cfg (packaging/grub/grub.cfg as
    shipped) and grub/grubenv (written by otaguard.device.grubenv)."""
    out.unlink(missing_ok=True)
    _run("mkfs.vfat", "-C", "-n", "OTAGBOOT", out, str(BOOT_MIB * 1024))
    _run("mmd", "-i", out, "::grub")
    _run("mcopy", "-i", out, GRUB_CFG, "::grub/grub.cfg")
    with tempfile.TemporaryDirectory() as tmp:
        env_file = Path(tmp) / "grubenv"
        GrubEnv(env_file).write(env)
        _run("mcopy", "-i", out, env_file, f"::{GRUB_ENV_FILE}")


def build_grub_board(board: BoardFiles) -> GrubBoardFiles:
    """The same slots behind GRUB instead of U-Boot: ``disk-grub.img`` and ``grub.lnx``."""
    if missing := missing_grub_tools():
        raise BoardError("missing: " + ", ".join(missing))
    out = board.disk.parent
    build_grub_loader(out / "grub.lnx")
    build_grub_boot_partition(default_env("a"), out / "boot-grub.vfat")
    versions = list(board.slot_images)
    parts = {"boot": out / "boot-grub.vfat", "slot_a": board.slot_images[versions[0]]}
    parts["slot_b"] = board.slot_images[versions[1]]
    assemble_disk(parts, out / "disk-grub.img")
    return GrubBoardFiles(out / "disk-grub.img", out / "grub.lnx")


@dataclass(frozen=True)
class GrubBoardFiles:
    disk: Path
    loader: Path  # GRUB for QEMU's -kernel


@dataclass(frozen=True)
class BoardFiles:
    """A built board: the pristine disk and the raw ext4 slot images it was made from."""

    disk: Path
    slot_images: dict[str, Path]  # version -> ext4 image
    boot_script: Path


def build_board(out: Path, versions: tuple[str, str] = ("1.0.0", "2.0.0")) -> BoardFiles:
    """Slot a holds ``versions[0]`` (committed, the default environment), slot b
    ``versions[1]`` (installed but not switched to)."""
    if missing := missing_tools():
        raise BoardError("missing: " + ", ".join(missing))
    out.mkdir(parents=True, exist_ok=True)
    kernel = fetch_kernel(cache_dir())
    images: dict[str, Path] = {}
    for slot, version in zip(("a", "b"), versions, strict=True):
        images[version] = out / f"rootfs-{version}.ext4"
        build_slot_image(kernel, version, f"rootfs_{slot}", images[version])
    script = out / "boot.scr"
    build_boot_script(script)
    build_boot_partition(script, default_env("a"), out / "boot.vfat")
    parts = {
        "boot": out / "boot.vfat",
        "slot_a": images[versions[0]],
        "slot_b": images[versions[1]],
    }
    assemble_disk(parts, out / "disk.img")
    return BoardFiles(out / "disk.img", images, script)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the OTAGuard QEMU board disk image")
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--grub", action="store_true", help="also disk-grub.img and grub.lnx")
    args = parser.parse_args(argv)
    try:
        board = build_board(args.outdir)
        print(board.disk)
        if args.grub:
            print(build_grub_board(board).disk)
    except BoardError as exc:
        print(f"build-qemu-board: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
