"""The thin path end to end over loopback TLS: sign, publish, deploy, verify, install, reboot,
commit, report; and the refusal of bytes changed after signing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.demo import Demo
from otaguard.server.metrics import ServerMetrics
from otaguard.server.transfers import flush as flush_transfers


def test_fleet_updates_from_v1_to_v2_and_server_keeps_history(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, v2 = d.release("2.0.0", security_version=1)
    d.provision_fleet(v1)
    dep_id = d.deploy(v2_name)

    runs = d.run()

    assert d.api is not None
    statuses = {t["device_id"]: t for t in d.api.deployment_devices(dep_id)}
    assert len(runs) == 4
    for r in runs:
        assert not r.error
        assert (r.version_before, r.slot_before) == ("1.0.0", "a")
        assert (r.version_after, r.slot_after) == ("2.0.0", "b")
        assert statuses[r.device_id]["status"] == "succeeded"
        detail = d.api.device(r.device_id)
        assert detail["current_version"] == "2.0.0"
        assert detail["active_slot"] == "b"
        events = [e["event"] for e in detail["events"]]
        assert events == [
            "downloading",
            "downloaded",
            "verified",
            "installed",
            "rebooting",
            "booted",
            "committed",
        ]
        committed = detail["events"][-1]
        assert (committed["version"], committed["slot"]) == ("2.0.0", "b")
        assert committed["deployment_id"] == dep_id
    dep = d.api.deployment(dep_id)
    assert dep["state"] == "completed"
    assert dep["counts"] == {"succeeded": 4}
    # The next check-in's signed manifest reports the image the agent verified into the slot
    # (what a delta must have been made from).
    first = d.fleet[0]
    assert d.api.device(first.config.device_id)["image_sha256"] is None  # factory image
    first.run_once()
    reported = d.api.device(first.config.device_id)["image_sha256"]
    assert reported == hashlib.sha256(v2).hexdigest()
    # The fleet bytes view: each device (client certificate) downloaded the full image once.
    assert d.ctx is not None
    flush_transfers(d.ctx, ServerMetrics())
    assert d.repo is not None
    size = d.repo.all_targets()[v2_name].length
    assert d.api.deployment(dep_id)["transfer"] == {
        "bytes_sent": 4 * size,
        "delta_bytes": 0,
        "full_bytes": 4 * size,
        "saved_bytes": 0,
        "devices_served": 4,
        "devices_delta": 0,
    }
    # The committed devices raised their anti-rollback counter to the release's level.
    assert all(dev.otp.value() == 1 for dev in d.fleet)
    # The boot environment is committed on the new slot, not left on trial.
    for dev in d.fleet:
        env = dev.env.read()
        assert (env["boot_slot"], env["upgrade_available"], env["bootcount"]) == ("b", "0", "0")


def test_artifact_changed_after_signing_is_refused_and_v1_keeps_running(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _v2 = d.release("2.0.0")
    assert d.ctx is not None
    assert d.repo is not None
    digest = d.repo.targets().signed.targets[v2_name].hashes["sha256"]
    blob = d.ctx.blobs.path(digest)
    tampered = bytearray(blob.read_bytes())
    tampered[-100] ^= 0xFF  # same length, one byte flipped: a malicious mirror or disk
    blob.write_bytes(bytes(tampered))

    d.provision_fleet(v1)
    dep_id = d.deploy(v2_name)
    runs = d.run()

    assert d.api is not None
    for r in runs:
        assert (r.version_after, r.slot_after) == ("1.0.0", "a")
        dev = next(x for x in d.fleet if x.config.device_id == r.device_id)
        env = dev.env.read()
        assert (env["boot_slot"], env["upgrade_available"]) == ("a", "0")
        # The tampered bytes never became bootable: the bootloader still boots slot a.
        assert dev.bootloader.boot().slot == "a"
        detail = d.api.device(r.device_id)
        events = [e["event"] for e in detail["events"]]
        assert "installed" not in events
        assert "committed" not in events
        assert events[-1] == "failed"
        assert "sha256" in detail["events"][-1]["detail"]["reason"]
    statuses = d.api.deployment_devices(dep_id)
    assert {s["status"] for s in statuses} == {"failed"}
    assert all("verification failed" in (s["detail"] or "") for s in statuses)


def test_demo_command_exits_zero_when_every_device_commits(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "demo",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            "0",
            "--devices",
            "3",
            "--payload-kib",
            "16",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "3/3 devices on 2.0.0" in result.output
    # Keys are kept for the next run and reused (same root keys), and never stored in clear.
    keys = sorted(p.name for p in (tmp_path / "d" / "keys" / "maker").glob("*.key"))
    assert keys == ["root-1.key", "root-2.key", "root-3.key", "targets-1.key", "targets-2.key"]
    for key in (tmp_path / "d" / "keys" / "maker").glob("*.key"):
        assert b"ENCRYPTED PRIVATE KEY" in key.read_bytes()
    before = (tmp_path / "d" / "keys" / "maker" / "root-1.pub.json").read_text()
    again = CliRunner().invoke(
        app,
        [
            "demo",
            "--data-dir",
            str(tmp_path / "d"),
            "--port",
            "0",
            "--devices",
            "2",
            "--payload-kib",
            "16",
        ],
    )
    assert again.exit_code == 0, again.output
    assert (tmp_path / "d" / "keys" / "maker" / "root-1.pub.json").read_text() == before
