"""GRUB's environment block against Debian's ``grub-editenv`` in both directions, and the
simulated bootloader's trial boot and fallback on it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otaguard.demo import HARDWARE, Demo
from otaguard.device.bootloader import Bootloader, default_env
from otaguard.device.grubenv import SIGNATURE, GrubEnv, decode_grubenv, encode_grubenv
from otaguard.device.image import build_image
from otaguard.device.otp import OtpCounter
from otaguard.device.slots import FileSlots
from otaguard.device.storage import PowerCut, PowerCutStorage
from otaguard.errors import BootError, ConfigError

needs_grub_editenv = pytest.mark.skipif(
    shutil.which("grub-editenv") is None,
    reason="grub-editenv not installed (Debian package grub-common)",
)


def editenv(path: Path, *args: str) -> str:
    proc = subprocess.run(
        ["grub-editenv", str(path), *args], capture_output=True, text=True, timeout=20, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def listed(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in editenv(path, "list").splitlines():
        name, sep, value = line.partition("=")
        assert sep, f"unexpected grub-editenv line {line!r}"
        out[name] = value
    return out


# -- format, no tool needed ------------------------------------------------------------------


def test_block_layout_and_round_trip() -> None:
    values = {"boot_slot": "b", "note": "back\\slash", "multi": "one\ntwo"}
    raw = encode_grubenv(values)
    assert len(raw) == 1024
    assert raw.startswith(SIGNATURE)
    assert b"note=back\\\\slash\n" in raw
    assert b"multi=one\\\ntwo\n" in raw
    assert raw.endswith(b"#")
    assert decode_grubenv(raw) == values


def test_bad_names_and_an_overfull_block_are_refused(tmp_path: Path) -> None:
    for name in ("", "a=b", "#x", "new\nline"):
        with pytest.raises(ConfigError):
            encode_grubenv({name: "1"})
    env = GrubEnv(tmp_path / "grubenv")
    env.write({"boot_slot": "a"})
    before = env.path.read_bytes()
    with pytest.raises(ConfigError, match="the block has 1024"):
        env.update(big="x" * 1024)
    assert env.path.read_bytes() == before  # nothing half-written


def test_missing_or_foreign_file_is_a_boot_error(tmp_path: Path) -> None:
    env = GrubEnv(tmp_path / "grubenv")
    assert not env.exists()
    with pytest.raises(BootError):
        env.read()
    env.path.write_bytes(b"\0" * 1024)
    assert not env.exists()
    with pytest.raises(BootError, match="signature"):
        env.read()


def test_a_cut_write_leaves_the_old_or_the_new_block(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    GrubEnv(path).write(default_env("a"))
    for k in range(1, 5):  # write, fsync, rename, fsync dir of the atomic replace
        for lose in (False, True):
            env = GrubEnv(path, PowerCutStorage(cut_at=k, lose_unsynced=lose))
            with pytest.raises(PowerCut):
                env.update(boot_slot="b")
            assert GrubEnv(path).read() in (default_env("a"), default_env("a") | {"boot_slot": "b"})
            GrubEnv(path).write(default_env("a"))


# -- interop with grub-editenv ------------------------------------------------------------


@needs_grub_editenv
def test_grub_editenv_reads_what_we_write(tmp_path: Path) -> None:
    env = GrubEnv(tmp_path / "grubenv")
    values = default_env("b") | {"note": "with spaces and back\\slash", "multi": "one\ntwo"}
    env.write(values)
    # grub-editenv lists the unescaped values, in block order.
    assert editenv(env.path, "list") == "".join(f"{k}={v}\n" for k, v in values.items())
    env.update(bootcount="2")
    assert "\nbootcount=2\n" in editenv(env.path, "list")
    editenv(env.path, "unset", "multi")
    expected = {k: v for k, v in values.items() if k != "multi"} | {"bootcount": "2"}
    assert env.read() == expected


@needs_grub_editenv
def test_we_read_what_grub_editenv_writes_and_write_the_same_bytes(tmp_path: Path) -> None:
    path = tmp_path / "grubenv"
    editenv(path, "create")
    editenv(path, "set", "boot_slot=a", "upgrade_available=0", "bootcount=0", "bootlimit=3")
    editenv(path, "set", "note=back\\slash", "multi=one\ntwo")
    env = GrubEnv(path)
    expected = default_env("a") | {"note": "back\\slash", "multi": "one\ntwo"}
    assert env.read() == expected
    tool_bytes = path.read_bytes()
    # Our rewrite of the same variables (same order) is byte-for-byte what grub-editenv wrote,
    # including the comment line Debian's grub-editenv puts after the signature.
    env.write(dict(expected))
    assert path.read_bytes() == tool_bytes
    editenv(path, "set", "boot_slot=b")
    editenv(path, "unset", "note")
    assert env.read() == {k: v for k, v in expected.items() if k != "note"} | {"boot_slot": "b"}


# -- the bootloader on a GRUB environment ---------------------------------------------------


def grub_board(tmp_path: Path, slot_b: bytes, *, bootlimit: int = 2) -> Bootloader:
    slots = FileSlots(tmp_path / "slots")
    slots.path("a").write_bytes(build_image("1.0.0", HARDWARE, security_version=1))
    slots.path("b").write_bytes(slot_b)
    env = GrubEnv(tmp_path / "grubenv")
    env.write(default_env("a") | {"bootlimit": str(bootlimit)})
    env.update(boot_slot="b", upgrade_available="1", bootcount="0")
    return Bootloader(env, slots, OtpCounter(tmp_path / "fuses"), HARDWARE)


def test_bootloader_on_grubenv_boots_the_trial_then_falls_back(tmp_path: Path) -> None:
    bl = grub_board(tmp_path, build_image("2.0.0", HARDWARE, security_version=1))
    assert isinstance(bl.env, GrubEnv)
    first = bl.boot()
    assert (first.slot, first.trial, bl.env.read()["bootcount"]) == ("b", True, "1")
    assert bl.boot().slot == "b"
    third = bl.boot()  # never confirmed: bootcount 3 > bootlimit 2
    assert (third.slot, third.fell_back, third.reason) == (
        "a",
        True,
        "bootcount 3 exceeded bootlimit 2",
    )
    env = bl.env.read()
    assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("a", "0", "0")
    if shutil.which("grub-editenv"):
        assert listed(bl.env.path)["boot_slot"] == "a"


def test_bootloader_on_grubenv_refuses_a_torn_trial_image(tmp_path: Path) -> None:
    image = build_image("2.0.0", HARDWARE, security_version=1)
    bl = grub_board(tmp_path, image[: len(image) // 2])
    result = bl.boot()
    assert (result.slot, result.fell_back) == ("a", True)
    assert "incomplete or corrupted" in result.reason


def test_a_device_on_grubenv_updates_and_commits_over_the_real_server(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    d.devices = 1
    d.provision_fleet(v1, env_backend="grub")
    (dev,) = d.fleet
    assert isinstance(dev.env, GrubEnv)
    d.deploy(v2_name)
    out = dev.run_once()
    assert out.reboot
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"]) == ("b", "1")
    out = dev.reboot()
    assert out.detail == "committed"
    assert (dev.version, dev.slot, dev.otp.value()) == ("2.0.0", "b", 1)
    env = dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("b", "0", "0")
    if shutil.which("grub-editenv"):
        tool = listed(dev.env.path)
        assert (tool["boot_slot"], tool["upgrade_available"]) == ("b", "0")


def _next_line_reference(raw: bytes, p: int) -> int:
    """GRUB's line walk, byte by byte (the loop ``_next_line`` replaced with a regex)."""
    while p < len(raw):
        if raw[p] == ord("\\"):
            p += 2
        elif raw[p] == ord("\n"):
            break
        else:
            p += 1
    return p + 1


@settings(max_examples=500, deadline=None)
@given(raw=st.binary(max_size=64).map(lambda b: b.replace(b"a", b"\\").replace(b"b", b"\n")))
def test_line_walk_matches_grubs_loop(raw: bytes) -> None:
    from otaguard.device.grubenv import _next_line

    for p in range(len(raw) + 1):
        assert _next_line(raw, p) == _next_line_reference(raw, p)
