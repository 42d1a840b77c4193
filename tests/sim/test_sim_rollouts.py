"""A real server (TLS on loopback, published releases) and 200 lightweight simulated devices:
phased rollouts under injected faults, and the alerts each fault class raises."""

from __future__ import annotations

import datetime as dt

import pytest

from otaguard.demo import HARDWARE, Demo
from otaguard.server.metrics import ServerMetrics
from otaguard.server.monitor import scan_once
from otaguard.sim.light import LightFleet, RunResult, run_rollout
from otaguard.sim.scenarios import scenario


def run(demo_world: Demo, name: str, devices: int = 200, max_rounds: int = 12) -> RunResult:
    d = demo_world
    _old, _ = d.release("1.0.0")
    new, _ = d.release("2.0.0")
    assert d.api is not None
    assert d.ctx is not None
    d.ctx.store.rollouts.silent_after = 0.5
    fleet = LightFleet(d.api.http, scenario(name, devices=devices), hardware=HARDWARE)
    fleet.enroll("1.0.0")
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    ctx = d.ctx

    def settle() -> None:  # what the server's monitor task does every few seconds
        import time

        time.sleep(0.6)  # past the silence threshold
        scan_once(ctx, ServerMetrics(), None, since)

    return run_rollout(
        fleet, target_name=new, new_version="2.0.0", before_evaluate=settle, max_rounds=max_rounds
    )


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
