"""A real server (TLS on loopback, published releases) and 200 lightweight simulated devices:
phased rollouts under injected faults, and the alerts each fault class raises."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from otaguard.demo import HARDWARE, Demo
from otaguard.server.metrics import ServerMetrics
from otaguard.server.monitor import scan_once
from otaguard.sim.light import (
    GUESSES,
    LOOP_BYTES,
    LOOP_DOWNLOADS,
    LightFleet,
    RunResult,
    run_rollout,
)
from otaguard.sim.scenarios import Fault, scenario


def run_fleet(
    demo_world: Demo, name: str, devices: int = 200, max_rounds: int = 12
) -> tuple[RunResult, LightFleet]:
    d = demo_world
    _old, _ = d.release("1.0.0")
    new, _ = d.release("2.0.0")
    assert d.api is not None
    assert d.ctx is not None
    d.ctx.store.rollouts.silent_after = 0.5
    d.ctx.settings.download_scan_seconds = 0  # every scan reads the download tally
    fleet = LightFleet(d.api.http, scenario(name, devices=devices), hardware=HARDWARE)
    fleet.enroll("1.0.0")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ctx = d.ctx

    def settle() -> None:  # what the server's monitor task does every few seconds
        import time

        time.sleep(0.6)  # past the silence threshold
        scan_once(ctx, ServerMetrics(), None, since)

    result = run_rollout(
        fleet, target_name=new, new_version="2.0.0", before_evaluate=settle, max_rounds=max_rounds
    )
    return result, fleet


def run(demo_world: Demo, name: str, devices: int = 200, max_rounds: int = 12) -> RunResult:
    return run_fleet(demo_world, name, devices, max_rounds)[0]


def kinds(result: RunResult) -> set[str]:
    return {a["kind"] for a in result.alerts}


def test_good_release_completes_every_phase_and_raises_no_alert(demo_world: Demo) -> None:
    result = run(demo_world, "clean")
    assert (result.state, result.outcome) == ("completed", "all_succeeded"), result.summary()
    assert [p["counts"]["succeeded"] for p in result.rollout["phases"]] == [20, 80, 100]
    assert result.alerts == []  # no false positives


def test_bad_release_is_paused_in_its_first_phase(demo_world: Demo) -> None:
    result = run(demo_world, "bad-release")
    assert result.rollout["status"] == "paused", result.summary()
    assert result.rollout["phase"] == 0
    failed = sum(p["counts"]["failed"] for p in result.rollout["phases"])
    assert 0 < failed < 0.1 * 200  # fewer than the canary phase's share were affected


def test_worse_health_is_held_at_the_gate(demo_world: Demo) -> None:
    result = run(demo_world, "worse-health")
    assert result.rollout["status"] == "running"
    assert result.rollout["phase"] == 0, result.summary()
    assert result.rollout["last_decision"]["reason"] == "health_gate"


def test_silent_devices_pause_the_rollout(demo_world: Demo) -> None:
    result = run(demo_world, "silent")
    assert result.rollout["status"] == "paused", result.summary()
    assert "silent" in result.rollout["note"]


@pytest.mark.parametrize(
    ("name", "alert"),
    [
        ("bad-signature", "verification_failure"),
        ("downgrade", "downgrade_attempt"),
        ("rogue-firmware", "unknown_firmware"),
    ],
)
def test_each_injected_anomaly_raises_its_alert(demo_world: Demo, name: str, alert: str) -> None:
    result = run(demo_world, name, devices=100, max_rounds=1)
    assert alert in kinds(result), result.summary()


def test_sim_run_command_prints_what_the_rollout_did(
    demo_world: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from otaguard.cli.main import app

    d = demo_world
    new, _ = d.release("2.0.0")
    d.release("1.0.0")
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    monkeypatch.setenv("OTAGUARD_TOKEN", d.ctx.admin_token)
    args = [
        "sim",
        "run",
        "clean",
        "--server",
        d.url,
        "--target",
        new,
        "--new-version",
        "2.0.0",
        "--devices",
        "30",
        "--ca",
        str(d.ctx.settings.tls.ca_cert),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "completed (all_succeeded)" in result.output
    assert "alerts: 0" in result.output
    assert d.ctx.admin_token not in result.output


def faulty(fleet: LightFleet, fault: Fault) -> set[str]:
    return {d.id for d in fleet.devices if d.fault is fault}


def of_kind(result: RunResult, kind: str) -> list[dict[str, Any]]:
    return [a for a in result.alerts if a["kind"] == kind]


def test_power_loss_mid_download_resumes_and_is_not_a_failure(demo_world: Demo) -> None:
    result, fleet = run_fleet(demo_world, "power-loss", devices=100)
    lost = [d for d in fleet.devices if d.fault is Fault.POWER_LOSS]
    assert len(lost) == 30
    assert all(d.lost_power for d in lost)
    assert (result.state, result.outcome) == ("completed", "all_succeeded"), result.summary()
    assert sum(p["counts"]["failed"] for p in result.rollout["phases"]) == 0
    assert all(d.version == "2.0.0" for d in fleet.devices)
    assert result.alerts == []  # a resumed (or restarted) download is not unusual volume


def test_download_loop_raises_download_volume_naming_the_device(demo_world: Demo) -> None:
    result, fleet = run_fleet(demo_world, "download-loop", devices=100)
    alerts = of_kind(result, "download_volume")
    assert {a["subject"] for a in alerts} == {
        f"device:{i}" for i in faulty(fleet, Fault.DOWNLOAD_LOOP)
    }
    assert {a["kind"] for a in result.alerts} == {"download_volume"}, result.summary()
    for a in alerts:
        e = a["evidence"]
        assert e["requests"] >= LOOP_DOWNLOADS
        assert e["targets"] == 1
        assert e["bytes_downloaded"] >= LOOP_BYTES
        assert e["expected_bytes"] == e["fleet_median_bytes"] > 0  # one image each
        assert e["ratio"] > e["factor"] == 3.0


def test_replayed_manifest_raises_replay_attempt_with_times_and_nonces(demo_world: Demo) -> None:
    result, fleet = run_fleet(demo_world, "replay", devices=100, max_rounds=1)
    replaying = faulty(fleet, Fault.REPLAY)
    alerts = of_kind(result, "replay_attempt")
    assert {a["subject"] for a in alerts} == {f"device:{i}" for i in replaying}, result.summary()
    assert {a["kind"] for a in result.alerts} == {"replay_attempt"}
    for a in alerts:
        e = a["evidence"]
        device = next(d for d in fleet.devices if f"device:{d.id}" == a["subject"])
        assert device.kept is not None
        assert e["refused"] is True
        assert e["nonce"]
        assert e["newest_nonce"]
        assert e["issued_at"] <= e["newest_seen_at"]  # not newer than the newest accepted
        assert a["severity"] == "critical"


def test_credential_guessing_raises_auth_failure_burst_for_the_address(demo_world: Demo) -> None:
    result, fleet = run_fleet(demo_world, "credential-guessing", devices=100, max_rounds=1)
    assert len(faulty(fleet, Fault.CREDENTIAL_GUESSING)) == 1
    (alert,) = of_kind(result, "auth_failure_burst")
    assert {a["kind"] for a in result.alerts} == {"auth_failure_burst"}, result.summary()
    e = alert["evidence"]
    assert alert["subject"] == "source:127.0.0.1"
    assert e["source"] == "127.0.0.1"
    assert e["failures"] == GUESSES
    assert e["threshold"] == 20
    assert e["window_seconds"] == 300
    assert e["routes"] == f"POST /device/v1/checkin ({GUESSES})"
    # the guessing did not lock the fleet out: valid credentials from the address still work
    assert all(d.checked_in for d in fleet.devices)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("name", "alert"),
    [
        ("clean", None),
        ("power-loss", None),
        ("slow", None),
        ("bad-signature", "verification_failure"),
        ("downgrade", "downgrade_attempt"),
        ("rogue-firmware", "unknown_firmware"),
        ("download-loop", "download_volume"),
        ("replay", "replay_attempt"),
        ("credential-guessing", "auth_failure_burst"),
    ],
)
def test_large_fleet_each_anomaly_only_its_alert(
    demo_world: Demo, name: str, alert: str | None
) -> None:
    result = run(demo_world, name, devices=1000)
    expected = {alert} if alert else set()
    if name == "replay":
        # a refused replay is a refused authentication, and the simulator's 20 replaying
        # devices share one address: more than 20 refusals from it in 5 min is also a burst
        expected.add("auth_failure_burst")
    assert kinds(result) == expected, result.summary()
