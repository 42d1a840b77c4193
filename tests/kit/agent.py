"""Helpers for tests that drive the agent through its TOML config and the ``otaguard agent``
commands: a provisioned simulated device described by an agent.toml, and bundle editing."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from otaguard.bundle.format import MANIFEST
from otaguard.device.bootloader import BootResult
from otaguard.sim.device import SimulatedDevice


def toml_str(value: object) -> str:
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_str(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def write_agent_toml(
    dev: SimulatedDevice, *, extra_agent: dict[str, object] | None = None, **device: object
) -> Path:
    """An agent.toml (next to the device's files) describing ``dev`` exactly."""
    c = dev.config
    agent: dict[str, object] = {
        "device_id": c.device_id,
        "hardware": c.hardware,
        "server_url": c.server_url,
        "state_dir": c.state_dir,
        "credential_file": c.credential_file,
        "director_key_file": c.director_key_file,
        "trusted_root_file": c.trusted_root_file,
    }
    if c.ca_file is not None:
        agent["ca_file"] = c.ca_file
    agent.update(extra_agent or {})
    layout: dict[str, object] = {
        "slots": "files",
        "slot_dir": "slots",
        "boot_env": "uboot",
        "uboot_env": ["uboot.env", "uboot-redund.env"],
        "otp_file": "otp.fuses",
        "cmdline_file": "cmdline",
    }
    layout.update(device)
    lines = ["[agent]"] + [f"{k} = {toml_str(v)}" for k, v in agent.items()]
    lines += ["", "[device]"] + [f"{k} = {toml_str(v)}" for k, v in layout.items()]
    write_cmdline(dev, dev.slot or "a")
    path = dev.directory / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def read_members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:") as tar:
        out = {}
        for info in tar.getmembers():
            fh = tar.extractfile(info)
            assert fh is not None
            out[info.name] = fh.read()
        return out


def rewrite_bundle(src: Path, dst: Path, changes: dict[str, bytes]) -> None:
    """Copy a bundle with some members replaced; the (unsigned) manifest is made to match, as
    an attacker would."""
    members = read_members(src)
    members.update(changes)
    manifest = json.loads(members[MANIFEST])
    manifest["files"] = {
        n: hashlib.sha256(b).hexdigest() for n, b in members.items() if n != MANIFEST
    }
    members[MANIFEST] = json.dumps(manifest).encode()
    with tarfile.open(dst, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name in [MANIFEST] + [n for n in members if n != MANIFEST]:
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))


def write_cmdline(dev: SimulatedDevice, slot: str) -> None:
    """What the bootloader passes to the kernel: which slot it booted."""
    (dev.directory / "cmdline").write_text(
        f"console=ttyS0 root=/dev/slot_{slot} otaguard.slot={slot}\n"
    )


def power_cycle(dev: SimulatedDevice) -> BootResult:
    """The board reboots: the simulated bootloader picks and checks a slot, then tells the
    kernel which one (the agent, started afterwards, reads that)."""
    boot = dev.bootloader.boot()
    write_cmdline(dev, boot.slot)
    return boot
