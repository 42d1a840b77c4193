"""Where a device keeps its slots, boot environment and anti-rollback counter (the ``[device]``
table of the agent's TOML config), and what the agent learns about the boot that just happened.

On a real board the bootloader has already run when the agent starts. It tells the kernel which
slot it booted (``otaguard.slot=a`` on the kernel command line, like RAUC's ``rauc.slot=``);
the boot environment says whether that slot is on trial, and the agent's journal says what the
slot holds (the release it installed there, or the factory image ``otaguard device provision``
recorded): the image itself is never parsed, so any image (ext4, squashfs, FIT, a firmware
blob) can run. ``boot_info`` reads exactly that and changes nothing. Without the command-line
flag the environment's ``boot_slot`` is taken, which is wrong between a switch and the reboot,
so real boards should pass the flag.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otaguard.device.bootenv import DEFAULT_ENV_SIZE, BootEnv, UBootEnv
from otaguard.device.bootloader import BootResult
from otaguard.device.grubenv import GrubEnv
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import BlockDeviceSlots, FileSlots, Slots
from otaguard.device.storage import Storage
from otaguard.errors import BootError, ConfigError

_PATHS = ("slot_dir", "slot_a", "slot_b", "grub_env", "otp_file", "cmdline_file")
SLOT_FLAG = "otaguard.slot="


@dataclass
class DeviceLayout:
    slots: str = "files"  # "files" (simulation: slot_a.img/slot_b.img in slot_dir) | "block"
    slot_dir: Path | None = None
    slot_a: Path | None = None
    slot_b: Path | None = None
    boot_env: str = "uboot"  # "uboot" | "grub"
    uboot_env: list[Path] = field(default_factory=list)
    uboot_env_offsets: list[int] | None = None
    uboot_env_size: int = DEFAULT_ENV_SIZE
    grub_env: Path | None = None
    otp_file: Path | None = None
    reboot_command: list[str] = field(default_factory=list)
    cmdline_file: Path = Path("/proc/cmdline")  # where the bootloader says which slot it booted

    def __post_init__(self) -> None:
        if self.slots == "files":
            if self.slot_dir is None:
                raise ConfigError("[device] slots = 'files' needs slot_dir")
        elif self.slots == "block":
            if self.slot_a is None or self.slot_b is None:
                raise ConfigError("[device] slots = 'block' needs slot_a and slot_b")
        else:
            raise ConfigError(f"[device] slots must be 'files' or 'block', not {self.slots!r}")
        if self.boot_env == "uboot":
            if len(self.uboot_env) not in (1, 2):
                raise ConfigError("[device] uboot_env lists one or two environment copies")
        elif self.boot_env == "grub":
            if self.grub_env is None:
                raise ConfigError("[device] boot_env = 'grub' needs grub_env")
        else:
            raise ConfigError(f"[device] boot_env must be 'uboot' or 'grub', not {self.boot_env!r}")
        if self.otp_file is None:
            raise ConfigError("[device] needs otp_file (the anti-rollback counter)")
        if not isinstance(self.reboot_command, list) or not all(
            isinstance(a, str) for a in self.reboot_command
        ):
            raise ConfigError("[device] reboot_command is a list of strings")

    @classmethod
    def from_toml(cls, path: Path) -> DeviceLayout:
        try:
            raw: dict[str, Any] = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read agent config {path}: {exc}") from exc
        return cls.from_table(raw.get("device"), path)

    @classmethod
    def from_table(cls, table: Any, path: Path) -> DeviceLayout:
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: missing [device] table")
        data = dict(table)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"{path}: unknown device settings {sorted(unknown)}")
        base = path.parent
        try:
            for key in _PATHS:
                if key in data:
                    data[key] = (base / str(data[key])).resolve()
            if "uboot_env" in data:
                data["uboot_env"] = [(base / str(p)).resolve() for p in data["uboot_env"]]
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def missing_files(self) -> list[str]:
        """``key (path)`` for every device file this layout needs that does not exist."""
        needed: list[tuple[str, Path | None]] = []
        if self.slots == "block":
            needed += [("slot_a", self.slot_a), ("slot_b", self.slot_b)]
        if self.boot_env == "grub":
            needed.append(("grub_env", self.grub_env))
        else:
            needed += [("uboot_env", p) for p in self.uboot_env]
        return [f"{k} ({p})" for k, p in needed if p is not None and not p.exists()]

    def open_slots(self, storage: Storage | None = None) -> Slots:
        if self.slots == "block":
            assert self.slot_a is not None
            assert self.slot_b is not None
            return BlockDeviceSlots(self.slot_a, self.slot_b, storage)
        assert self.slot_dir is not None
        return FileSlots(self.slot_dir, storage)

    def open_env(self, storage: Storage | None = None) -> BootEnv:
        if self.boot_env == "grub":
            assert self.grub_env is not None
            return GrubEnv(self.grub_env, storage)
        return UBootEnv(
            self.uboot_env, self.uboot_env_size, storage, offsets=self.uboot_env_offsets
        )

    def open_otp(self, storage: Storage | None = None) -> OtpCounter:
        assert self.otp_file is not None
        return OtpCounter(self.otp_file, storage)


def booted_slot(cmdline_file: Path | None) -> str | None:
    """The slot named by ``otaguard.slot=`` on the kernel command line, if any."""
    if cmdline_file is None:
        return None
    try:
        words = cmdline_file.read_text().split()
    except OSError:
        return None
    for word in words:
        if word.startswith(SLOT_FLAG):
            return word[len(SLOT_FLAG) :]
    return None


ENV_VARIABLES = ("boot_slot", "upgrade_available", "bootcount", "bootlimit")
ENV_HINT = (
    "the boot environment must hold boot_slot (a or b), upgrade_available (0), bootcount (0) "
    "and bootlimit (e.g. 3); write it with `otaguard device provision --config agent.toml "
    "--boot-slot a --slot-version a=VERSION`"
)


def boot_info(
    env: BootEnv, cmdline_file: Path | None = None, slot_versions: dict[str, str] | None = None
) -> BootResult:
    """The boot that already happened: the slot the bootloader says it booted (else the
    environment's ``boot_slot``), on trial if the environment has that slot on trial, running
    what the journal says that slot holds (``slot_versions``; None if it does not know).

    Raises:
        BootError: the boot environment is missing, blank or lacks ``boot_slot``, with the
            variables it needs and the command that writes them.
    """
    try:
        values = env.read()
    except (BootError, ConfigError, OSError) as exc:
        raise BootError(f"cannot read the boot environment ({exc}); {ENV_HINT}") from exc
    slot = booted_slot(cmdline_file) or values.get("boot_slot")
    if slot not in ("a", "b"):
        raise BootError(f"the boot environment names no boot slot; {ENV_HINT}")
    return BootResult(
        slot=slot,
        version=(slot_versions or {}).get(slot),
        trial=values.get("upgrade_available") == "1" and values.get("boot_slot") == slot,
        fell_back=False,
    )
