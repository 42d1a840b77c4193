"""An agent that fails clearly: the whole config is checked at start (types, durations such as
"10m", https only, every missing file named), an operator's mistake ends in one message and
exit status 2 with no traceback, ``run --once`` exits 1 when the cycle failed, a blank boot
environment is named with its variables and the command that writes them, and a device using
mutual TLS never sends its bearer credential."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kit.agent import write_agent_toml
from otaguard.agent.config import AgentConfig
from otaguard.agent.config_values import parse_duration
from otaguard.cli.main import app
from otaguard.demo import Demo
from otaguard.errors import ConfigError
from otaguard.net.client import DeviceCredentials
from otaguard.sim.device import SimulatedDevice

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), (1.5, 1.5), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0),
     ("500ms", 0.5), ("45", 45.0)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration("poll_interval", text) == seconds


@pytest.mark.parametrize("bad", ["10 minutes", "m", "-5s", True, [], "1e3"])
def test_bad_durations_name_the_key(bad: object) -> None:
    with pytest.raises(ConfigError, match="poll_interval"):
        parse_duration("poll_interval", bad)


@pytest.fixture
def device(demo_world: Demo) -> SimulatedDevice:
    d = demo_world
    _, v1 = d.release("1.0.0")
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    dev.close()
    return dev


def run(toml: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["agent", "run", "--once", "--config", str(toml), *args])
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception  # never a traceback
    return result.exit_code, re.sub(r"\s+", " ", result.output)


def test_durations_in_toml_accepted_and_refused(device: SimulatedDevice) -> None:
    toml = write_agent_toml(device, extra_agent={"poll_interval": "10m", "health_timeout": "90s"})
    cfg = AgentConfig.from_toml(toml)
    assert (cfg.poll_interval, cfg.health_timeout) == (600.0, 90.0)
    toml = write_agent_toml(device, extra_agent={"poll_interval": "ten minutes"})
    code, out = run(toml)
    assert code == 2
    assert "poll_interval" in out
    assert "10m" in out  # says what is expected


def test_every_missing_file_is_named(device: SimulatedDevice, tmp_path: Path) -> None:
    toml = write_agent_toml(
        device,
        extra_agent={"ca_file": tmp_path / "nope-ca.pem"},
        slots="block",
        slot_a=tmp_path / "nope-a",
        slot_b=tmp_path / "nope-b",
    )
    device.config.director_key_file.unlink()
    code, out = run(toml)
    assert code == 2
    for key in ("director_key_file", "ca_file", "slot_a", "slot_b"):
        assert key in out
    assert "nope-ca.pem" in out


def test_plain_http_server_refused_unless_insecure_test_option(
    device: SimulatedDevice, tmp_path: Path
) -> None:
    toml = write_agent_toml(device, extra_agent={"server_url": "http://127.0.0.1:9"})
    code, out = run(toml)
    assert code == 2
    assert "plain http" in out
    toml = write_agent_toml(
        device, extra_agent={"server_url": "http://127.0.0.1:9", "insecure_http": True}
    )
    assert AgentConfig.from_toml(toml).server_url == "http://127.0.0.1:9"  # control


def test_run_once_exits_nonzero_when_the_cycle_failed(device: SimulatedDevice) -> None:
    toml = write_agent_toml(
        device, extra_agent={"server_url": "https://127.0.0.1:9", "request_timeout": "2s"}
    )
    code, out = run(toml)
    assert code == 1
    assert "cycle retry" in out
    toml = write_agent_toml(device)  # control: the real server, nothing to do
    assert run(toml)[0] == 0


def test_blank_boot_environment_names_variables_and_command(device: SimulatedDevice) -> None:
    toml = write_agent_toml(device)
    for path in device.directory.glob("uboot*.env"):
        path.write_bytes(b"")
    code, out = run(toml)
    assert code != 0
    for name in ("boot_slot", "upgrade_available", "bootcount", "bootlimit"):
        assert name in out
    assert "otaguard device provision" in out


def test_mutual_tls_device_never_sends_its_bearer(device: SimulatedDevice) -> None:
    c = device.config
    assert c.client_cert is not None
    extra: dict[str, object] = {
        "client_cert_file": c.client_cert_file,
        "client_key_file": c.client_key_file,
    }
    toml = write_agent_toml(device, extra_agent=extra)
    text = toml.read_text()
    toml.write_text("\n".join(ln for ln in text.splitlines() if "credential_file" not in ln))
    cfg = AgentConfig.from_toml(toml)
    assert cfg.credential_file is None
    assert cfg.credential() is None
    assert "Authorization" not in DeviceCredentials(cfg.device_id, cfg.credential()).headers()
    assert run(toml)[0] == 0  # checks in with the certificate alone
    # Control: with a credential and no certificate, the bearer is sent.
    plain = AgentConfig.from_toml(write_agent_toml(device))
    headers = DeviceCredentials(plain.device_id, plain.credential()).headers()
    assert headers["Authorization"].startswith("Bearer ")
    # mTLS configured but the credential file kept: still not sent.
    both = AgentConfig.from_toml(write_agent_toml(device, extra_agent=extra))
    assert both.credential() is None
