"""The shipped boot integration agrees with the agent: the U-Boot script and the GRUB snippet
use the boot environment variables of ``otaguard.device.bootloader`` and put the slot flag the
agent reads (``agent/layout.py``) on the kernel command line; the confirm unit runs on trial
boots only; boot.scr builds with mkimage and grub.cfg passes grub-script-check. (The U-Boot
script's behaviour is proven by booting it: tests/test_qemu_boot.py.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from otaguard.agent.layout import SLOT_FLAG
from otaguard.device.bootloader import default_env

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
BOOT_CMD = PACKAGING / "u-boot" / "boot.cmd"
GRUB_CFG = PACKAGING / "grub" / "grub.cfg"
ENV_NAMES = sorted(default_env())


@pytest.mark.parametrize("script", [BOOT_CMD, GRUB_CFG], ids=["u-boot", "grub"])
def test_boot_scripts_use_the_agent_variables_and_slot_flag(script: Path) -> None:
    text = script.read_text()
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    for name in [*ENV_NAMES, "ota_attempt"]:
        assert re.search(rf"\b{name}\b", code), f"{script.name} does not use {name}"
    assert f"{SLOT_FLAG}${{boot_slot}}" in code
    assert "otaguard.trial=${otg_trial}" in code


def test_u_boot_script_imports_and_exports_only_its_variables() -> None:
    code = BOOT_CMD.read_text()
    listed = re.search(r'setenv otg_vars "([^"]+)"', code)
    assert listed is not None
    assert sorted(listed.group(1).split()) == sorted([*ENV_NAMES, "ota_attempt"])
    assert "env import -c ${otg_env_addr} ${otg_env_size} ${otg_vars}" in code
    assert "env export -c -s ${otg_env_size} ${otg_env_addr} ${otg_vars}" in code


def test_u_boot_script_has_no_quote_in_code() -> None:
    # U-Boot's hush fails the whole script on an apostrophe inside a double-quoted string.
    for line in BOOT_CMD.read_text().splitlines():
        if not line.lstrip().startswith("#"):
            assert "'" not in line, line


def test_confirm_unit_runs_on_trial_boots_after_boot_complete() -> None:
    unit = (PACKAGING / "otaguard-confirm.service").read_text()
    assert "ConditionKernelCommandLine=otaguard.trial=1" in unit
    assert "After=boot-complete.target" in unit.replace(" local-fs.target", "")
    assert "ExecStart=/usr/bin/otaguard agent confirm --config /etc/otaguard/agent.toml" in unit


@pytest.mark.skipif(shutil.which("mkimage") is None, reason="mkimage not installed (u-boot-tools)")
def test_boot_scr_builds(tmp_path: Path) -> None:
    out = tmp_path / "boot.scr"
    subprocess.run(
        [PACKAGING / "u-boot" / "build-boot-scr.sh", out, "arm64"], check=True, timeout=30
    )
    listing = subprocess.run(
        ["mkimage", "-l", out], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert "Script" in listing
    assert BOOT_CMD.read_bytes() in out.read_bytes()


@pytest.mark.skipif(
    shutil.which("grub-script-check") is None, reason="grub-script-check not installed"
)
def test_grub_snippet_parses() -> None:
    subprocess.run(["grub-script-check", GRUB_CFG], check=True, timeout=30)
