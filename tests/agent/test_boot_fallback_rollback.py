"""Trial boot, bootcount/bootlimit fallback, health-check rollback and anti-rollback, against the
real server over loopback TLS (``demo_world``) and against the simulated bootloader alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otaguard.agent.statemachine import State
from otaguard.demo import HARDWARE, Demo
from otaguard.device.bootenv import UBootEnv
from otaguard.device.bootloader import Bootloader, BootResult, default_env
from otaguard.device.image import build_image
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import FileSlots
from otaguard.errors import BootError
from otaguard.sim.device import SimulatedDevice


class BootHang(BaseException):
    """The new image hangs during boot: the watchdog resets the board, nothing is confirmed."""


def one_device(d: Demo, image: bytes, **kwargs: Any) -> SimulatedDevice:
    d.devices = 1
    d.provision_fleet(image, **kwargs)
    return d.fleet[0]


def server_view(
    d: Demo, dev: SimulatedDevice, dep_id: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    assert d.api is not None
    detail = d.api.device(dev.config.device_id)
    (target,) = [
        t for t in d.api.deployment_devices(dep_id) if t["device_id"] == dev.config.device_id
    ]
    return detail, target


def test_trial_boot_then_commit_raises_the_counter_only_after_commit(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=3)
    seen: list[tuple[BootResult, dict[str, str], int]] = []

    def health(boot: BootResult) -> tuple[bool, str]:
        seen.append((boot, dev.env.read(), dev.otp.value()))
        return True, "ok"

    dev = one_device(d, v1, health_check=health)
    dep_id = d.deploy(v2_name)
    out = dev.run_once()
    assert out.reboot
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("b", "1", "0")
    assert dev.agent is not None
    assert dev.agent.journal.state is State.REBOOT_PENDING
    assert dev.otp.value() == 0

    out = dev.reboot()
    assert out.detail == "committed"
    ((boot, env_during, otp_during),) = seen
    assert (boot.slot, boot.trial, boot.fell_back, boot.header.version) == (
        "b",
        True,
        False,
        "2.0.0",
    )
    assert (env_during["bootcount"], env_during["upgrade_available"]) == ("1", "1")
    assert otp_during == 0  # still on trial: the fuses are not blown yet
    assert dev.otp.value() == 3
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("b", "0", "0")
    detail, target = server_view(d, dev, dep_id)
    assert target["status"] == "succeeded"
    assert (detail["current_version"], detail["active_slot"]) == ("2.0.0", "b")
    # A committed image boots without trial from now on.
    again = dev.bootloader.boot()
    assert (again.slot, again.trial) == ("b", False)


def test_failing_health_check_rolls_back_and_the_server_sees_why(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    dev = one_device(d, v1, health_check=lambda b: (b.slot == "a", "service xyz did not start"))
    dep_id = d.deploy(v2_name)

    outcomes = dev.run_until_settled()

    assert [o.action for o in outcomes] == ["reboot", "reboot", "idle"]
    assert outcomes[-1].detail.startswith("rolled back: health check failed")
    assert (dev.version, dev.slot) == ("1.0.0", "a")
    assert dev.otp.value() == 0  # never committed, never raised
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"]) == ("a", "0")
    detail, target = server_view(d, dev, dep_id)
    assert detail["update_state"] == "rolled_back"
    assert (detail["current_version"], detail["active_slot"]) == ("1.0.0", "a")
    events = [e["event"] for e in detail["events"]]
    assert events[-3:] == ["rebooting", "booted", "rolled_back"]
    last = detail["events"][-1]
    assert last["detail"]["reason"] == "health check failed: service xyz did not start"
    assert (last["version"], last["slot"], last["deployment_id"]) == ("1.0.0", "a", dep_id)
    assert target["status"] == "failed"
    assert "service xyz did not start" in target["detail"]
    assert d.api is not None
    assert d.api.deployment(dep_id)["counts"] == {"failed": 1}


def test_image_that_hangs_before_confirming_falls_back_after_bootlimit(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    trial_boots: list[int] = []

    def health(boot: BootResult) -> tuple[bool, str]:
        if boot.slot == "b":
            trial_boots.append(int(dev.env.read()["bootcount"]))
            raise BootHang
        return True, "ok"

    dev = one_device(d, v1, health_check=health)
    dep_id = d.deploy(v2_name)
    assert dev.run_once().reboot

    resets = 0
    while True:
        try:
            out = dev.reboot()
            break
        except BootHang:
            resets += 1
            assert resets <= 10, "the bootloader never fell back"

    assert trial_boots == [1, 2, 3]  # bootlimit 3: three trial boots, the fourth falls back
    assert resets == 3
    assert dev.boot is not None
    assert (dev.boot.slot, dev.boot.fell_back) == ("a", True)
    assert out.detail == "rolled back: bootcount 4 exceeded bootlimit 3"
    assert dev.otp.value() == 0
    assert dev.agent is not None
    assert dev.agent.journal.state is State.IDLE
    detail, target = server_view(d, dev, dep_id)
    assert detail["events"][-1]["event"] == "rolled_back"
    assert detail["events"][-1]["detail"]["reason"] == "bootcount 4 exceeded bootlimit 3"
    assert target["status"] == "failed"
    assert detail["current_version"] == "1.0.0"
    # The device stays on v1 and is not offered the failed deployment again.
    assert dev.run_once().action == "idle"
    assert dev.slot == "a"


def test_release_below_the_fuses_is_refused_even_when_signed(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0", security_version=2)
    old_name, _ = d.release("0.9.0", security_version=1)  # validly signed, but older
    dev = one_device(d, v1)
    dev.otp.raise_to(2)
    env_before = dev.env.read()
    dep_id = d.deploy(old_name)

    out = dev.run_once()

    assert out.action == "refused"
    assert "anti-rollback counter 2" in out.detail
    assert not dev.slots.path("b").exists()  # not one byte downloaded
    assert dev.env.read() == env_before
    assert dev.otp.value() == 2
    detail, target = server_view(d, dev, dep_id)
    assert detail["events"][-1]["event"] == "refused"
    assert detail["events"][-1]["detail"]["code"] == "compatibility"
    assert target["status"] == "failed"
    assert "below this device's anti-rollback counter" in target["detail"]


# -- the bootloader alone ------------------------------------------------------------------


def board(tmp_path: Path, slot_b: bytes, *, fuses: int = 0, bootlimit: int = 3) -> Bootloader:
    slots = FileSlots(tmp_path / "slots")
    slots.path("a").write_bytes(build_image("1.0.0", HARDWARE, security_version=1))
    slots.path("b").write_bytes(slot_b)
    env = UBootEnv([tmp_path / "env1", tmp_path / "env2"])
    env.write(default_env("a") | {"bootlimit": str(bootlimit)})
    otp = OtpCounter(tmp_path / "fuses")
    otp.raise_to(fuses)
    env.update(boot_slot="b", upgrade_available="1", bootcount="0")  # what the agent does
    return Bootloader(env, slots, otp, HARDWARE)


def test_bootloader_counts_trial_boots_then_falls_back(tmp_path: Path) -> None:
    bl = board(tmp_path, build_image("2.0.0", HARDWARE, security_version=1), bootlimit=2)
    first = bl.boot()
    assert (first.slot, first.trial, bl.env.read()["bootcount"]) == ("b", True, "1")
    second = bl.boot()
    assert (second.slot, second.trial, bl.env.read()["bootcount"]) == ("b", True, "2")
    third = bl.boot()
    assert (third.slot, third.trial, third.fell_back) == ("a", False, True)
    assert third.reason == "bootcount 3 exceeded bootlimit 2"
    env = bl.env.read()
    assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("a", "0", "0")
    assert bl.boot().slot == "a"  # and stays there


def test_bootloader_refuses_a_signed_image_below_the_fuses(tmp_path: Path) -> None:
    bl = board(tmp_path, build_image("0.9.0", HARDWARE, security_version=0), fuses=1)
    result = bl.boot()
    assert (result.slot, result.fell_back) == ("a", True)
    assert "security version 0 < fused 1" in result.reason


def test_bootloader_refuses_a_torn_trial_image(tmp_path: Path) -> None:
    image = build_image("2.0.0", HARDWARE, security_version=1)
    bl = board(tmp_path, image[: len(image) // 2])
    result = bl.boot()
    assert (result.slot, result.fell_back) == ("a", True)
    assert "incomplete or corrupted" in result.reason


def test_bootloader_refuses_when_no_slot_is_bootable(tmp_path: Path) -> None:
    bl = board(tmp_path, build_image("2.0.0", HARDWARE, security_version=1), fuses=5)
    with pytest.raises(BootError, match="no bootable slot"):
        bl.boot()
