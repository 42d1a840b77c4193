"""Our U-Boot environment against Debian's ``fw_printenv``/``fw_setenv`` (libubootenv), in both
directions: single and redundant layouts, copies at offsets of one file, many alternating writes
(the redundant flags byte wraps around), and a torn write of one copy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from otaguard.device.bootenv import UBootEnv, decode_env
from otaguard.device.bootloader import default_env
from otaguard.device.storage import PowerCut, PowerCutStorage

pytestmark = pytest.mark.skipif(
    shutil.which("fw_printenv") is None or shutil.which("fw_setenv") is None,
    reason="fw_printenv/fw_setenv not installed (Debian package libubootenv-tool)",
)

ENV_SIZE = 0x2000


def config_for(env: UBootEnv, tmp_path: Path) -> Path:
    cfg = tmp_path / "fw_env.config"
    cfg.write_text(env.fw_env_config())
    return cfg


def fw_printenv(cfg: Path) -> dict[str, str]:
    proc = subprocess.run(
        ["fw_printenv", "-c", str(cfg)], capture_output=True, text=True, timeout=20, check=False
    )
    assert proc.returncode == 0, proc.stderr
    values = {}
    for line in proc.stdout.splitlines():
        name, sep, value = line.partition("=")
        assert sep, f"unexpected fw_printenv line {line!r}"
        values[name] = value
    return values


def fw_setenv(cfg: Path, name: str, value: str | None = None) -> None:
    args = ["fw_setenv", "-c", str(cfg), name] + ([value] if value is not None else [])
    proc = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(params=["single", "redundant", "one-file-two-offsets"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> UBootEnv:
    if request.param == "single":
        return UBootEnv([tmp_path / "uboot.env"], ENV_SIZE)
    if request.param == "redundant":
        return UBootEnv([tmp_path / "uboot.env", tmp_path / "uboot-redund.env"], ENV_SIZE)
    # A real board: both copies on one device, 0x4000 apart, behind a bootloader area.
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\xa5" * 0x10000)
    return UBootEnv([disk, disk], ENV_SIZE, offsets=[0x8000, 0xC000])


def test_fw_printenv_reads_what_we_write(env: UBootEnv, tmp_path: Path) -> None:
    cfg = config_for(env, tmp_path)
    values = default_env("b") | {"ota_attempt": "0123abcd", "bootargs": "console=ttyS0 rw x=1"}
    env.write(values)
    assert fw_printenv(cfg) == values
    env.update(bootcount="2", upgrade_available="1")
    assert fw_printenv(cfg) == values | {"bootcount": "2", "upgrade_available": "1"}


def test_we_read_what_fw_setenv_writes(env: UBootEnv, tmp_path: Path) -> None:
    cfg = config_for(env, tmp_path)
    env.write(default_env("a"))
    fw_setenv(cfg, "boot_slot", "b")
    fw_setenv(cfg, "upgrade_available", "1")
    fw_setenv(cfg, "note", "set by fw_setenv")
    assert env.read() == default_env("a") | {
        "boot_slot": "b",
        "upgrade_available": "1",
        "note": "set by fw_setenv",
    }
    fw_setenv(cfg, "note")  # no value: fw_setenv deletes the variable
    assert "note" not in env.read()
    if env.redundant:
        # fw_setenv followed the flags rule: each write went to the other copy, flags + 1.
        flags = sorted(c.flags for c in env.copies())
        assert flags[1] - flags[0] == 1


def test_many_alternating_writes_agree_across_the_flags_wraparound(tmp_path: Path) -> None:
    env = UBootEnv([tmp_path / "uboot.env", tmp_path / "uboot-redund.env"], ENV_SIZE)
    cfg = config_for(env, tmp_path)
    env.write(default_env("a"))
    expected = default_env("a")
    seen_flags: list[int] = []
    for i in range(1, 131):  # 260 writes: the flags byte wraps past 0xff to 0 once
        env.update(counter=str(i))
        fw_setenv(cfg, "fw_counter", str(i))
        expected |= {"counter": str(i), "fw_counter": str(i)}
        if i % 10 == 0 or i > 120:
            assert fw_printenv(cfg) == expected
        assert env.read() == expected
        seen_flags.extend(c.flags for c in env.copies())
    copies = env.copies()
    assert all(c.valid for c in copies)
    assert {c.flags for c in copies} == {260 % 256, 259 % 256}  # 0x04 and 0x03 after the wrap
    assert {0xFF, 0x00} <= set(seen_flags)  # flags went through 0xff and wrapped to 0
    assert fw_printenv(cfg) == expected


@pytest.mark.parametrize("wrap", [False, True], ids=["flags-3-4", "flags-ff-0"])
def test_a_torn_write_of_one_copy_leaves_the_previous_environment(
    tmp_path: Path, wrap: bool
) -> None:
    paths = [tmp_path / "uboot.env", tmp_path / "uboot-redund.env"]
    env = UBootEnv(paths, ENV_SIZE)
    cfg = config_for(env, tmp_path)
    env.write(default_env("a"))
    for _ in range(254 if wrap else 3):
        env.update(bootcount="0")
    env.update(boot_slot="a", bootcount="1")
    before = env.read()
    current_flags = max(c.flags for c in env.copies())
    assert current_flags == (255 if wrap else 4)

    torn = UBootEnv(paths, ENV_SIZE, PowerCutStorage(cut_at=1, torn_fraction=16 / ENV_SIZE))
    with pytest.raises(PowerCut):
        torn.update(boot_slot="b", upgrade_available="1")
    # The copy being written got the new CRC and flags and 11 bytes of data: invalid.
    states = [c.valid for c in env.copies()]
    assert sorted(states) == [False, True]
    assert env.read() == before
    assert fw_printenv(cfg) == before

    # fw_setenv repairs by writing the torn copy with flags one above the good one.
    fw_setenv(cfg, "boot_slot", "b")
    assert env.read() == before | {"boot_slot": "b"}
    assert all(c.valid for c in env.copies())
    assert {c.flags for c in env.copies()} == {current_flags, (current_flags + 1) & 0xFF}


def test_a_torn_fw_setenv_write_leaves_the_previous_environment(tmp_path: Path) -> None:
    paths = [tmp_path / "uboot.env", tmp_path / "uboot-redund.env"]
    env = UBootEnv(paths, ENV_SIZE)
    cfg = config_for(env, tmp_path)
    env.write(default_env("a"))
    before = env.read()
    old = [p.read_bytes() for p in paths]
    fw_setenv(cfg, "boot_slot", "b")
    (written,) = [i for i, p in enumerate(paths) if p.read_bytes() != old[i]]
    new = paths[written].read_bytes()
    # The power went off early in fw_setenv's write: new CRC, flags and a few bytes of data,
    # the rest still the old copy's bytes.
    paths[written].write_bytes(new[:12] + old[written][12:])
    assert not decode_env(paths[written].read_bytes(), redundant=True).valid
    assert env.read() == before
    assert fw_printenv(cfg) == before
