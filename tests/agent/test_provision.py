"""``otaguard device provision`` prepares a device from its agent.toml alone: state directory,
manifest key made on the device (public key printed for registration), boot environment,
what the factory slot holds, and, with a one-time token read from a file or stdin, its TLS
certificate; the device then checks in by mutual TLS with no bearer credential at all."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kit.agent import toml_str
from kit.delta import images, release_image, sign_and_publish
from otaguard.cli.main import app
from otaguard.crypto.keys import public_key_json
from otaguard.demo import HARDWARE, Demo
from otaguard.errors import ConfigError
from otaguard.repo.maker_deltas import add_deltas

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


def delta_releases(d: Demo) -> tuple[bytes, str]:
    """Releases 1.0.0 and 2.0.0 and the maker's delta 1.0.0 -> 2.0.0, signed and published
    (nothing forces the offer: the server offers it only on the exact reported image)."""
    assert d.repo is not None
    v1, v2 = images(300 * 1024)
    release_image(d, "1.0.0", v1)
    v2_name = release_image(d, "2.0.0", v2, security_version=1)
    (outcome,) = add_deltas(d.repo, v2_name, ["1.0.0"])
    assert outcome.target is not None, outcome.message
    sign_and_publish(d)
    return v1, v2_name


def enroll_device(d: Demo, toml: Path, tmp_path: Path, *args: str) -> None:
    code, out, err = provision(toml, *args)
    assert code == 0, err
    assert d.api is not None
    d.api.register_device("board-0001", HARDWARE, ["demo"], manifest_key=json.loads(out))
    token = tmp_path / "token"
    token.write_text(d.api.enrollment_token("board-0001") + "\n")
    token.chmod(0o600)
    code, _, err = provision(toml, "--token-file", str(token))
    assert code == 0, err


def first_update(d: Demo, toml: Path, v2_name: str) -> list[dict[str, object]]:
    """Deploy 2.0.0 and run the agent's cycles until the image is in slot b; the device's
    ``downloaded`` event details."""
    assert d.api is not None
    d.deploy(v2_name)
    for _ in range(4):
        result = runner.invoke(app, ["agent", "run", "--once", "--config", str(toml)])
        assert result.exit_code in (0, 1), result.output
        events = d.api.device("board-0001")["events"]
        downloaded = [e["detail"] for e in events if e["event"] == "downloaded"]
        if downloaded:
            return downloaded
    raise AssertionError(f"no download: {d.api.device('board-0001')['events']}")


def test_provisioned_factory_image_gets_a_delta_on_its_first_update(
    demo_world: Demo, tmp_path: Path
) -> None:
    d = demo_world
    v1, v2_name = delta_releases(d)
    root = tmp_path / "board"
    toml = device_toml(d, root)
    (root / "slots").mkdir()
    (root / "slots" / "slot_a.img").write_bytes(v1 + bytes(4096))  # a partition: longer
    factory = tmp_path / "factory.img"
    factory.write_bytes(v1)
    enroll_device(d, toml, tmp_path, "--slot-image", f"a={factory}")
    journal = json.loads((root / "state" / "journal.json").read_text())
    assert journal["slot_images"] == {"a": hashlib.sha256(v1).hexdigest()}
    (downloaded,) = first_update(d, toml, v2_name)
    assert str(downloaded.get("delta", "")).endswith(".otadelta"), downloaded
    assert int(str(downloaded["bytes"])) < len(v1) // 4


def test_factory_image_file_must_be_what_the_slot_holds(demo_world: Demo, tmp_path: Path) -> None:
    """Control: an image file that is not the slot's content is refused, nothing journaled."""
    root = tmp_path / "board"
    toml = device_toml(demo_world, root)
    (root / "slots").mkdir()
    (root / "slots" / "slot_a.img").write_bytes(b"factory image" * 100)
    other = tmp_path / "other.img"
    other.write_bytes(b"another image" * 100)
    code, _, err = provision(toml, "--slot-image", f"a={other}")
    assert code == 2
    assert "does not hold the image" in err
    assert not (root / "state" / "journal.json").exists()


def test_agent_hashes_a_plain_file_factory_slot_once_when_the_journal_lacks_it(
    demo_world: Demo, tmp_path: Path
) -> None:
    """A device provisioned before hashes were recorded (its journal knows the factory
    version only): the agent hashes its plain-file slot once, and the first update is a
    delta. Control: without that hash the server offers no delta (``test_delta_flow``)."""
    d = demo_world
    v1, v2_name = delta_releases(d)
    root = tmp_path / "board"
    toml = device_toml(d, root)
    (root / "slots").mkdir()
    (root / "slots" / "slot_a.img").write_bytes(v1)
    enroll_device(d, toml, tmp_path)
    path = root / "state" / "journal.json"
    journal = json.loads(path.read_text())
    assert journal["slot_images"] == {"a": hashlib.sha256(v1).hexdigest()}  # a plain file
    journal["slot_images"] = {}
    path.write_text(json.dumps(journal))
    (downloaded,) = first_update(d, toml, v2_name)
    assert str(downloaded.get("delta", "")).endswith(".otadelta"), downloaded


def test_block_slots_record_a_hash_only_from_the_factory_image_file(tmp_path: Path) -> None:
    """Partitions are longer than their image: without the image file the hash stays unknown
    (never the whole partition's); with it, the partition's first bytes are checked."""
    from otaguard.agent.layout import DeviceLayout
    from otaguard.agent.provision import slot_hashes

    image = b"factory image bytes" * 500
    part_a, part_b = tmp_path / "mmcblk0p2", tmp_path / "mmcblk0p3"
    part_a.write_bytes(image + bytes(64 * 1024))  # the partition: image, then free space
    part_b.write_bytes(bytes(64 * 1024))
    layout = DeviceLayout(
        slots="block",
        slot_a=part_a,
        slot_b=part_b,
        uboot_env=[tmp_path / "env"],
        otp_file=tmp_path / "otp",
    )
    assert slot_hashes(layout, {"a": "1.0.0"}, {}, set()) == {}
    factory = tmp_path / "factory.img"
    factory.write_bytes(image)
    got = slot_hashes(layout, {"a": "1.0.0"}, {"a": factory}, set())
    assert got == {"a": hashlib.sha256(image).hexdigest()}
    factory.write_bytes(image[:-1] + b"X")  # control: another image is refused
    with pytest.raises(ConfigError, match="does not hold the image"):
        slot_hashes(layout, {"a": "1.0.0"}, {"a": factory}, set())
