"""Offline updates: ``otaguard bundle create`` from the real server, ``otaguard agent install``
on a device described by its agent.toml. A valid bundle installs and commits after the reboot;
a modified image, forged or expired metadata, or a release for other hardware is refused with a
clear error and the device keeps running its image."""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from kit.agent import power_cycle, read_members, rewrite_bundle, write_agent_toml
from otaguard.bundle.format import MANIFEST, BundleReader
from otaguard.cli.main import app
from otaguard.demo import HARDWARE, Demo
from otaguard.device.image import build_image
from otaguard.repo.images import ReleaseInfo
from otaguard.repo.roles import TARGETS
from otaguard.sim.device import SimulatedDevice

runner = CliRunner()


@dataclass
class Offline:
    d: Demo
    dev: SimulatedDevice
    toml: Path
    v2_name: str
    v2: bytes
    ca: Path
    root: Path

    def bundle(self, target: str, out: Path) -> Path:
        result = runner.invoke(
            app,
            [
                "bundle",
                "create",
                str(out),
                "--target",
                target,
                "--server",
                self.d.url,
                "--ca",
                str(self.ca),
                "--root",
                str(self.root),
            ],
        )
        assert result.exit_code == 0, result.output
        return out

    def install(self, bundle: Path) -> tuple[int, str]:
        result = runner.invoke(
            app, ["agent", "install", str(bundle), "--config", str(self.toml), "--no-reboot"]
        )
        return result.exit_code, result.output

    def status(self) -> dict[str, object]:
        result = runner.invoke(app, ["agent", "status", "--config", str(self.toml), "--json"])
        assert result.exit_code == 0, result.output
        data: dict[str, object] = json.loads(result.stdout)
        return data

    def assert_still_on_v1(self, env_before: dict[str, str]) -> None:
        assert self.dev.env.read() == env_before
        boot = power_cycle(self.dev)  # power cycle: the board boots what it ran before
        assert (boot.slot, boot.header.version, boot.trial) == ("a", "1.0.0", False)
        st = self.status()
        assert st["state"] == "idle"
        assert st["running"] == {"slot": "a", "version": "1.0.0"}
        assert st["security_version"] == 0


def add_release(d: Demo, version: str, hardware: str, security_version: int = 1) -> str:
    assert d.repo is not None
    assert d.api is not None
    name = f"{HARDWARE}/firmware-{version}-{hardware}.img"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image"
        path.write_bytes(build_image(version, hardware, security_version=security_version))
        d.repo.add_target(path, name, ReleaseInfo(version, (hardware,), security_version))
    for signer in d.maker_signers[TARGETS]:
        d.repo.sign(TARGETS, signer)
    d.api.publish(d.repo)
    return name


@pytest.fixture
def offline(demo_world: Demo) -> Offline:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, v2 = d.release("2.0.0", security_version=1)
    d.devices = 1
    d.provision_fleet(v1)
    (dev,) = d.fleet
    dev.close()  # from now on the device is driven by `otaguard agent ...` only
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    assert d.repo is not None
    return Offline(
        d,
        dev,
        write_agent_toml(dev),
        v2_name,
        v2,
        d.ctx.settings.tls.ca_cert,
        d.repo.root_history()[0],
    )


def test_bundle_layout(offline: Offline, tmp_path: Path) -> None:
    bundle = offline.bundle(offline.v2_name, tmp_path / "v2.bundle")
    members = read_members(bundle)
    names = list(members)
    assert names[0] == MANIFEST
    assert "metadata/1.root.json" in names
    assert "metadata/timestamp.json" in names
    assert any(n.endswith(".snapshot.json") for n in names)
    assert any(n.endswith(".targets.json") for n in names)
    (image,) = [n for n in names if n.startswith("targets/")]
    assert members[image] == offline.v2
    with BundleReader(bundle) as reader:
        assert reader.target == offline.v2_name
        reader.check_integrity()


def test_valid_bundle_installs_then_commits_after_reboot(offline: Offline, tmp_path: Path) -> None:
    bundle = offline.bundle(offline.v2_name, tmp_path / "v2.bundle")
    code, output = offline.install(bundle)
    assert code == 0, output
    assert "installed 2.0.0 into slot b" in output
    env = offline.dev.env.read()
    assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("b", "1", "0")
    assert offline.status()["state"] == "reboot_pending"
    assert offline.dev.slots.path("b").read_bytes() == offline.v2

    boot = power_cycle(offline.dev)  # the reboot: the bootloader boots the trial slot
    assert (boot.slot, boot.trial, boot.header.version) == ("b", True, "2.0.0")
    result = runner.invoke(app, ["agent", "run", "--once", "--config", str(offline.toml)])
    assert result.exit_code == 0, result.output
    st = offline.status()
    assert st["state"] == "idle"
    assert st["running"] == {"slot": "b", "version": "2.0.0"}
    assert st["security_version"] == 1
    assert st["boot_env"] == {
        "boot_slot": "b",
        "upgrade_available": "0",
        "bootcount": "0",
        "bootlimit": "3",
    }
    assert st["pending_reports"] == 0  # queued offline, delivered once the server answered
    assert offline.d.api is not None
    events = [e["event"] for e in offline.d.api.device(offline.dev.config.device_id)["events"]]
    assert "committed" in events


def test_bundle_with_a_modified_image_is_refused(offline: Offline, tmp_path: Path) -> None:
    good = offline.bundle(offline.v2_name, tmp_path / "v2.bundle")
    (image,) = [n for n in read_members(good) if n.startswith("targets/")]
    evil = bytearray(offline.v2)
    evil[-10] ^= 0xFF
    bad = tmp_path / "evil.bundle"
    rewrite_bundle(good, bad, {image: bytes(evil)})
    env_before = offline.dev.env.read()
    code, output = offline.install(bad)
    assert code == 1
    assert "sha256" in output
    offline.assert_still_on_v1(env_before)


def test_bundle_with_forged_metadata_is_refused(offline: Offline, tmp_path: Path) -> None:
    good = offline.bundle(offline.v2_name, tmp_path / "v2.bundle")
    members = read_members(good)
    (image,) = [n for n in members if n.startswith("targets/")]
    (targets_name,) = [n for n in members if n.endswith(".targets.json")]
    # The attacker's image, and targets metadata edited to describe it (signatures unchanged).
    evil = build_image("6.6.6", HARDWARE, security_version=9)
    md = json.loads(members[targets_name])
    entry = md["signed"]["targets"][offline.v2_name]
    import hashlib

    entry["hashes"] = {"sha256": hashlib.sha256(evil).hexdigest()}
    entry["length"] = len(evil)
    bad = tmp_path / "forged.bundle"
    rewrite_bundle(good, bad, {image: evil, targets_name: json.dumps(md).encode()})
    env_before = offline.dev.env.read()
    code, output = offline.install(bad)
    assert code == 1
    assert "repository metadata rejected" in output
    offline.assert_still_on_v1(env_before)


def test_bundle_with_expired_metadata_is_refused(
    offline: Offline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = offline.bundle(offline.v2_name, tmp_path / "v2.bundle")
    from tuf.ngclient._internal import trusted_metadata_set

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Later:  # type: ignore[override]
            return super().now(tz) + dt.timedelta(days=30)

    # The USB stick sat in a drawer for 30 days: the device's clock is past the expiry.
    monkeypatch.setattr(
        trusted_metadata_set, "datetime", SimpleNamespace(datetime=Later, timezone=dt.timezone)
    )
    env_before = offline.dev.env.read()
    code, output = offline.install(bundle)
    assert code == 1
    assert "expired" in output
    monkeypatch.undo()
    offline.assert_still_on_v1(env_before)


def test_bundle_for_other_hardware_is_refused(offline: Offline, tmp_path: Path) -> None:
    name = add_release(offline.d, "2.1.0", "other-board")
    bundle = offline.bundle(name, tmp_path / "other.bundle")
    env_before = offline.dev.env.read()
    code, output = offline.install(bundle)
    assert code == 1
    assert "release is for other-board, not sim-board" in output
    offline.assert_still_on_v1(env_before)


def test_not_a_bundle_is_a_clear_error(offline: Offline, tmp_path: Path) -> None:
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"not a tar file" * 100)
    code, output = offline.install(junk)
    assert code == 2
    assert "not a readable bundle" in output
    assert not offline.dev.slots.path("b").exists()
