"""The QEMU board harness's keyboard (tests/qemu/machine.py ``UBootKeys``): a fast boot stops
U-Boot's countdown, then types its boot command only once U-Boot shows its prompt (typed
earlier, the command could be cut and the board would sit at the prompt until the deadline);
and a boot that was power-cycled is parsed from its last power-on only."""

from __future__ import annotations

from qemu.machine import AUTOBOOT_PROMPT, FAST_BOOT_COMMAND, UBootKeys, last_attempt

BANNER = b"U-Boot 2023.01\r\nLoading Environment from nowhere... OK\r\n"


def test_the_command_waits_for_the_prompt() -> None:
    keys = UBootKeys(stage=0)
    assert keys.step(BANNER) == b""
    log = BANNER + AUTOBOOT_PROMPT + b":  2 "
    assert keys.step(log) == b"\n"  # stop the countdown, once
    assert keys.step(log) == b""
    log += b"\b\b\b 1 "
    assert keys.step(log) == b""  # no prompt yet: nothing typed
    log += b"\r\n=> "
    assert keys.step(log) == FAST_BOOT_COMMAND
    assert keys.step(log + b"setenv boot_targets virtio0; boot\r\n=> ") == b""


def test_a_prompt_before_the_countdown_does_not_count() -> None:
    keys = UBootKeys(stage=0)
    log = b"=> " + AUTOBOOT_PROMPT  # "=> " seen before the key was sent
    assert keys.step(log) == b"\n"
    assert keys.step(log) == b""
    assert keys.step(log + b"\r\n=> ") == FAST_BOOT_COMMAND


def test_nothing_is_typed_when_not_asked() -> None:
    keys = UBootKeys(stage=2)  # autoboot left alone (fast=False) or GRUB
    assert keys.step(BANNER + AUTOBOOT_PROMPT + b"\r\n=> ") == b""


def test_a_power_cycled_boot_is_read_from_its_last_power_on() -> None:
    first = BANNER + b"\n[harness: U-Boot silent before boot.scr; power-cycled]\n"
    second = BANNER + b"OTAGUARD-BOOT version=1.0.0 slot=a trial=0\r\n"
    assert last_attempt(first + second) == second
    assert last_attempt(second) == second
