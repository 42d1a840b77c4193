"""The simulated bootloader: U-Boot-style boot counting with A/B fallback, plus a boot ROM
check of the image before it runs it.

Boot environment variables (the same names a real U-Boot script would use):

``boot_slot``          slot to boot (``a`` or ``b``)
``upgrade_available``  ``1`` while a new slot is on trial, ``0`` once committed
``bootcount``          boots attempted during the trial
``bootlimit``          trial boots allowed before falling back to the other slot
"""

from __future__ import annotations

from dataclasses import dataclass

from otaguard.device.bootenv import BootEnv
from otaguard.device.image import ImageHeader, check_image
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import Slots, other_slot
from otaguard.errors import BootError

DEFAULT_BOOTLIMIT = 3


@dataclass(frozen=True)
class BootResult:
    """A boot that happened: the slot, whether on trial or after a fallback, and what it runs
    when the boot knows it (the simulated boot ROM reads its image header; a real board's agent
    knows it from its journal, see ``agent/layout.py``)."""

    slot: str
    trial: bool
    fell_back: bool
    reason: str = ""
    version: str | None = None
    header: ImageHeader | None = None  # the simulated image's header


def default_env(slot: str = "a") -> dict[str, str]:
    return {
        "boot_slot": slot,
        "upgrade_available": "0",
        "bootcount": "0",
        "bootlimit": str(DEFAULT_BOOTLIMIT),
    }


class Bootloader:
    def __init__(self, env: BootEnv, slots: Slots, otp: OtpCounter, hardware: str) -> None:
        self.env = env
        self.slots = slots
        self.otp = otp
        self.hardware = hardware

    def _verify(self, slot: str) -> ImageHeader:
        """The boot ROM's check: intact image, for this hardware, not below the fused counter."""
        with self.slots.open_read(slot) as fh:
            header = check_image(fh)
        if header.hardware != self.hardware:
            raise BootError(f"image is for {header.hardware}, this board is {self.hardware}")
        if header.security_version < self.otp.value():
            raise BootError(
                f"image security version {header.security_version} < fused {self.otp.value()}"
            )
        return header

    def boot(self) -> BootResult:
        env = self.env.read()
        slot = env.get("boot_slot", "a")
        trial = env.get("upgrade_available") == "1"
        reason = ""
        if trial:
            count = int(env.get("bootcount", "0")) + 1
            limit = int(env.get("bootlimit", str(DEFAULT_BOOTLIMIT)))
            if count > limit:
                reason = f"bootcount {count} exceeded bootlimit {limit}"
                return self._fall_back(env, slot, reason)
            env["bootcount"] = str(count)
            self.env.write(env)
        try:
            header = self._verify(slot)
        except BootError as exc:
            if not trial:
                # The committed slot itself is bad: try the other one rather than brick.
                return self._fall_back(env, slot, f"slot {slot} failed verification: {exc}")
            return self._fall_back(env, slot, f"trial slot {slot} failed verification: {exc}")
        return BootResult(
            slot=slot, header=header, version=header.version, trial=trial, fell_back=False
        )

    def _fall_back(self, env: dict[str, str], failed: str, reason: str) -> BootResult:
        alt = other_slot(failed)
        try:
            header = self._verify(alt)
        except BootError as exc:
            raise BootError(f"no bootable slot: {reason}; slot {alt}: {exc}") from exc
        env.update(boot_slot=alt, upgrade_available="0", bootcount="0")
        self.env.write(env)
        return BootResult(
            slot=alt,
            header=header,
            version=header.version,
            trial=False,
            fell_back=True,
            reason=reason,
        )
