"""Operating the agent: TOML config (and its errors), JSON-lines logs without secrets,
``otaguard agent run`` polling against the real server and stopping cleanly on SIGTERM,
``otaguard agent status``, and the packaged example config."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kit.agent import power_cycle, write_agent_toml
from otaguard.agent.config import AgentConfig
from otaguard.agent.layout import DeviceLayout
from otaguard.agent.logs import json_logging
from otaguard.cli.main import app
from otaguard.demo import Demo
from otaguard.device.bootenv import UBootEnv
from otaguard.device.grubenv import GrubEnv
from otaguard.device.slots import BlockDeviceSlots
from otaguard.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()

GOOD = """
[agent]
device_id = "dev-1"
hardware = "sim-board"
server_url = "https://ota.example:8443"
state_dir = "state"
credential_file = "state/credential"
director_key_file = "keys/director.pub.json"
trusted_root_file = "keys/root.json"
ca_file = "keys/ca.pem"
health_command = ["/usr/bin/true"]
poll_interval = 600.0
poll_jitter = 0.1

[device]
slots = "block"
slot_a = "/dev/mmcblk0p2"
slot_b = "/dev/mmcblk0p3"
boot_env = "uboot"
uboot_env = ["/dev/mmcblk0", "/dev/mmcblk0"]
uboot_env_offsets = [0x3f0000, 0x3f4000]
uboot_env_size = 0x4000
otp_file = "otp.fuses"
reboot_command = ["systemctl", "reboot"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_config_from_toml(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    cfg = AgentConfig.from_toml(path)
    assert (cfg.device_id, cfg.hardware, cfg.poll_interval, cfg.poll_jitter) == (
        "dev-1",
        "sim-board",
        600.0,
        0.1,
    )
    assert cfg.state_dir == (tmp_path / "state").resolve()  # relative to the config file
    assert cfg.ca_file == (tmp_path / "keys" / "ca.pem").resolve()
    assert cfg.journal_path == (tmp_path / "state" / "journal.json").resolve()
    assert cfg.health_command == ["/usr/bin/true"]
    assert cfg.max_download_attempts == AgentConfig.max_download_attempts  # defaults kept
    layout = DeviceLayout.from_toml(path)
    assert layout.uboot_env == [Path("/dev/mmcblk0"), Path("/dev/mmcblk0")]
    env = layout.open_env()
    assert isinstance(env, UBootEnv)
    assert env.fw_env_config() == "/dev/mmcblk0 0x3f0000 0x4000\n/dev/mmcblk0 0x3f4000 0x4000\n"
    slots = layout.open_slots()
    assert isinstance(slots, BlockDeviceSlots)
    assert slots.path("b") == Path("/dev/mmcblk0p3")
    assert layout.reboot_command == ["systemctl", "reboot"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agent\nx=1", "cannot read agent config"),
        ('[other]\nx = "y"\n', "missing [agent] table"),
        (GOOD.replace("poll_jitter = 0.1", "poll_jiter = 0.1"), "unknown agent settings"),
        (GOOD.replace('hardware = "sim-board"\n', ""), "hardware"),
    ],
)
def test_agent_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        AgentConfig.from_toml(write(tmp_path, text))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('slots = "block"', 'slots = "nand"'), "slots must be 'files' or 'block'"),
        (('slot_b = "/dev/mmcblk0p3"\n', ""), "needs slot_a and slot_b"),
        (('boot_env = "uboot"', 'boot_env = "grub"'), "needs grub_env"),
        (('otp_file = "otp.fuses"\n', ""), "needs otp_file"),
        (('reboot_command = ["systemctl", "reboot"]', 'reboot_command = "reboot"'), "list"),
        (('otp_file = "otp.fuses"', 'otp_file = "otp.fuses"\nfuses = 3'), "unknown device"),
        (("[device]", "[devices]"), "missing [device] table"),
    ],
)
def test_device_config_errors(tmp_path: Path, change: tuple[str, str], message: str) -> None:
    assert change[0] in GOOD
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        DeviceLayout.from_toml(write(tmp_path, GOOD.replace(*change)))


def test_grub_layout(tmp_path: Path) -> None:
    text = GOOD.replace('boot_env = "uboot"', 'boot_env = "grub"\ngrub_env = "boot/grubenv"')
    env = DeviceLayout.from_toml(write(tmp_path, text)).open_env()
    assert isinstance(env, GrubEnv)
    assert env.path == (tmp_path / "boot" / "grubenv").resolve()


def test_packaged_example_config_parses() -> None:
    path = REPO / "packaging" / "agent.toml"
    cfg = AgentConfig.from_toml(path)
    layout = DeviceLayout.from_toml(path)
    assert cfg.state_dir == Path("/var/lib/otaguard")
    assert layout.slots == "block"
    assert layout.reboot_command
    unit = (REPO / "packaging" / "otaguard-agent.service").read_text()
    assert "ExecStart=/usr/bin/otaguard agent run --config /etc/otaguard/agent.toml" in unit


# -- logs ---------------------------------------------------------------------------------


def test_json_log_lines_carry_fields_and_no_secrets() -> None:
    out = io.StringIO()
    log = logging.getLogger("otaguard.test")
    with json_logging("debug", out):
        log.info(
            "checked in with Authorization: Bearer s3cr3t-t0ken",
            extra={"slot": "b", "credential": "s3cr3t", "headers": {"Authorization": "x"}},
        )
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after: not captured")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 2
    first = lines[0]
    assert first["level"] == "info"
    assert first["logger"] == "otaguard.test"
    assert first["slot"] == "b"
    assert first["credential"] == "[redacted]"
    assert first["headers"] == {"Authorization": "[redacted]"}
    assert "s3cr3t" not in out.getvalue()
    assert first["ts"].endswith("+00:00")
    assert "ValueError: boom" in lines[1]["exc"]


# -- agent run / status against the real server -------------------------------------------


def test_agent_run_once_then_status(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    dev.close()
    marker = dev.directory / "rebooted"
    toml = write_agent_toml(
        dev, reboot_command=[sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
    )
    d.deploy(v2_name)
    result = runner.invoke(app, ["agent", "run", "--once", "--config", str(toml)])
    assert result.exit_code == 0, result.output
    assert marker.exists()  # the configured reboot command ran
    status = runner.invoke(app, ["agent", "status", "--config", str(toml)])
    assert "update state:  reboot_pending" in status.stdout
    assert "running:       1.0.0 (slot a)" in status.stdout
    # The agent restarts before the board reboots (say the reboot command failed): it must not
    # take the pending switch for a trial boot of the new slot; it asks for the reboot again.
    marker.unlink()
    result = runner.invoke(app, ["agent", "run", "--once", "--config", str(toml)])
    assert result.exit_code == 0, result.output
    assert marker.exists()
    status = runner.invoke(app, ["agent", "status", "--config", str(toml)])
    assert "update state:  reboot_pending" in status.stdout
    power_cycle(dev)
    result = runner.invoke(app, ["agent", "run", "--once", "--config", str(toml)])
    assert result.exit_code == 0, result.output
    status = runner.invoke(app, ["agent", "status", "--config", str(toml)])
    assert "running:       2.0.0 (slot b)" in status.stdout
    assert "update state:  idle" in status.stdout


def test_agent_run_polls_and_stops_cleanly_on_sigterm(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    dev.close()
    toml = write_agent_toml(dev, extra_agent={"poll_interval": 3600.0})
    exe = Path(sys.executable).parent / "otaguard"
    proc = subprocess.Popen(
        [str(exe), "agent", "run", "--config", str(toml), "--log-level", "debug"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        lines: list[dict[str, object]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(json.loads(line))
            if lines[-1]["msg"] == "waiting":
                break
        msgs = [entry["msg"] for entry in lines]
        assert msgs[:2] == ["booted", "cycle done"]
        assert "waiting" in msgs  # polled once, now waiting ~3600 s with jitter
        waiting = next(e for e in lines if e["msg"] == "waiting")
        assert 3600 * 0.8 <= float(str(waiting["seconds"])) <= 3600 * 1.2
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 10
        rest = [json.loads(line) for line in proc.stderr.read().splitlines() if line.strip()]
        assert rest[-1]["msg"] == "stopped"
        assert rest[-1]["state"] == "idle"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
