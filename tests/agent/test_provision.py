"""``otaguard device provision`` prepares a device from its agent.toml alone: state directory,
manifest key made on the device (public key printed for registration), boot environment,
what the factory slot holds, and, with a one-time token read from a file or stdin, its TLS
certificate; the device then checks in by mutual TLS with no bearer credential at all."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kit.agent import toml_str
from otaguard.cli.main import app
from otaguard.crypto.keys import public_key_json
from otaguard.demo import HARDWARE, Demo

runner = CliRunner()


def device_toml(d: Demo, root: Path) -> Path:
    assert d.ctx is not None
    assert d.repo is not None
    tls = d.ctx.settings.tls
    assert tls is not None
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "director.pub.json").write_text(public_key_json(d.ctx.director.public_key))
    (etc / "root.json").write_bytes(d.repo.root_history()[0].read_bytes())
    agent = {
        "device_id": "board-0001",
        "hardware": HARDWARE,
        "server_url": d.url,
        "state_dir": root / "state",
        "director_key_file": etc / "director.pub.json",
        "trusted_root_file": etc / "root.json",
        "ca_file": tls.ca_cert,
        "client_cert_file": etc / "client.pem",
        "client_key_file": etc / "client.key",
        "poll_interval": "10m",
    }
    device = {
        "slots": "files",
        "slot_dir": root / "slots",
        "uboot_env": [root / "boot" / "otaguard.env"],
        "otp_file": root / "state" / "otp.fuses",
        "cmdline_file": root / "cmdline",
    }
    (root / "cmdline").write_text("console=ttyS0 otaguard.slot=a\n")
    lines = ["[agent]", *(f"{k} = {toml_str(v)}" for k, v in agent.items())]
    lines += ["[device]", *(f"{k} = {toml_str(v)}" for k, v in device.items())]
    path = etc / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def provision(toml: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(
        app,
        ["device", "provision", "--config", str(toml), "--slot-version", "a=1.0.0", *args],
        input=stdin,
    )
    return result.exit_code, result.stdout, result.stderr


def test_provision_enroll_and_check_in(demo_world: Demo, tmp_path: Path) -> None:
    d = demo_world
    d.release("1.0.0")
    toml = device_toml(d, tmp_path / "board")
    code, out, err = provision(toml)
    assert code == 0, err
    public = json.loads(out)
    assert "still missing: client_cert_file" in err
    state = tmp_path / "board" / "state"
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "manifest.key").stat().st_mode & 0o777 == 0o600
    assert json.loads((state / "manifest.pub.json").read_text()) == public
    env = tmp_path / "board" / "boot" / "otaguard.env"
    env_bytes = env.read_bytes()
    assert json.loads((state / "journal.json").read_text())["slot_versions"] == {"a": "1.0.0"}

    # The factory station registers the device with that key and gets it a one-time token.
    assert d.api is not None
    d.api.register_device("board-0001", HARDWARE, ["demo"], manifest_key=public)
    token = tmp_path / "token"
    token.write_text(d.api.enrollment_token("board-0001") + "\n")
    token.chmod(0o600)
    code, out, err = provision(toml, "--token-file", str(token))
    assert code == 0, err
    assert "enrolled" in err
    assert "still missing" not in err
    assert json.loads(out) == public  # the same key: provisioning is idempotent
    assert env.read_bytes() == env_bytes  # a valid environment is left alone
    assert (tmp_path / "board" / "etc" / "client.key").stat().st_mode & 0o777 == 0o600

    result = runner.invoke(app, ["agent", "run", "--once", "--config", str(toml)])
    assert result.exit_code == 0, result.output
    detail = d.api.device("board-0001")
    assert (detail["current_version"], detail["active_slot"]) == ("1.0.0", "a")


def test_token_only_from_file_or_stdin(demo_world: Demo, tmp_path: Path) -> None:
    toml = device_toml(demo_world, tmp_path / "board")
    result = runner.invoke(
        app, ["device", "provision", "--config", str(toml), "--token", "secret-on-cmdline"]
    )
    assert result.exit_code == 2  # no such option
    code, _, err = provision(toml, "--token-file", "-", stdin="not-a-valid-token\n")
    assert code == 2
    assert "enrollment refused" in err  # read from stdin and sent
    code, _, err = provision(toml, "--token-file", "-", stdin="\n")
    assert code == 2
    assert "token is empty" in err
