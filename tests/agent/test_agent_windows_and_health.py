"""The real agent against a real server (loopback TLS): it downloads outside its maintenance
window but waits to install ("waiting: maintenance window ...", reported once), and installs
once the window opens; and its own health reports after an update hold a phased rollout at the
health gate when the new release makes devices worse (control: a release that does not,
reported the same way, passes the gate)."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest

from otaguard.agent.health_reports import HealthSample
from otaguard.demo import Demo
from otaguard.fleet_client import GroupClient
from otaguard.sim.device import SimulatedDevice
from otaguard.sim.fleet import run_fleet


def waiting_events(d: Demo, device_id: str) -> list[str]:
    assert d.api is not None
    events = d.api.device(device_id)["events"]
    return [e["detail"]["reason"] for e in events if e["event"] == "waiting"]


def test_downloads_outside_the_window_installs_inside(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    now = [dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)]  # a Tuesday, noon
    d.devices = 3
    d.provision_fleet(v1, sleep=lambda _s: None, wall_clock=lambda: now[0])
    windowed, free, dropped = d.fleet
    for dev in (windowed, dropped):
        dev.config.maintenance_windows = ["02:00-04:00 Europe/Berlin"]
        dev.config.cancel_check_seconds = 0.0
    assert d.api is not None
    ids = [dev.config.device_id for dev in d.fleet]
    dep_id = int(d.api.create_deployment("r", v2_name, {"devices": ids[:2]})["id"])
    other = int(d.api.create_deployment("s", v2_name, {"devices": ids[2:]})["id"])

    out = windowed.run_once()
    assert out.action == "retry"
    assert out.detail.startswith("waiting: maintenance window closed (02:00-04:00 Europe/Berlin)")
    assert "2026-12-02T01:00+00:00" in out.detail
    assert windowed.agent is not None
    assert windowed.agent.journal.state.value == "installing"  # downloaded and verified
    assert windowed.agent.journal.bytes_written > 0
    assert windowed.env.read()["boot_slot"] == "a"  # nothing switched
    device_id = windowed.config.device_id
    (target,) = [t for t in d.api.deployment_devices(dep_id) if t["device_id"] == device_id]
    assert target["status"] == "in_progress"
    assert target["detail"].startswith("waiting: maintenance window closed")
    assert d.api.device(device_id)["update_state"] == "waiting"
    # polls and a power cycle outside the window: still waiting, told once
    assert windowed.run_once().action == "retry"
    assert windowed.reboot().action == "retry"
    assert windowed.env.read()["boot_slot"] == "a"
    assert len(waiting_events(d, device_id)) == 1
    # a device that polls once a day still wakes up when its window opens (13 h from noon)
    windowed.config.poll_interval = 86400.0
    assert windowed.agent is not None
    assert 13 * 3600 <= windowed.agent.poll_delay() <= 13 * 3600 + 30

    # control: the same update on a device without windows installs at once
    free.run_until_settled()
    assert free.version == "2.0.0"
    free.run_once()  # idle: its first health report after the update goes out
    free.config.poll_interval = 86400.0
    assert free.agent is not None
    assert free.agent.poll_delay() == 300.0  # and it wakes up for the next one

    # a deployment cancelled while its device waits for a window is never installed
    assert dropped.run_once().detail.startswith("waiting: maintenance window closed")
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    api = GroupClient(d.url, d.ctx.admin_token, d.ctx.settings.tls.ca_cert)
    api.cancel_deployment(other)
    api.close()
    out = dropped.run_once()
    assert (out.action, out.detail) == (
        "failed",
        "the server cancelled the deployment while it waited for a maintenance window",
    )
    assert dropped.env.read()["boot_slot"] == "a"
    assert dropped.agent is not None
    assert dropped.agent.journal.state.value == "idle"

    now[0] = dt.datetime(2026, 12, 2, 1, 30, tzinfo=dt.UTC)  # 02:30 in Berlin
    windowed.run_until_settled()
    assert windowed.version == "2.0.0"
    (target,) = [t for t in d.api.deployment_devices(dep_id) if t["device_id"] == device_id]
    assert target["status"] == "succeeded"
    dropped.run_until_settled()  # the window is open, but nothing is offered any more
    assert (dropped.version, dropped.env.read()["boot_slot"]) == ("1.0.0", "a")


FLEET = 20


def probe_for(
    dev: SimulatedDevice, *, worse: bool, rng: random.Random
) -> Callable[[], HealthSample]:
    """What the device measures: on 2.0.0 of a bad release it boots slower and its
    application's health check fails (it still committed: the trial boot's check passed)."""

    def probe() -> HealthSample:
        bad = worse and dev.version == "2.0.0"
        return HealthSample(
            boot_seconds=rng.gauss(30.0 if bad else 20.0, 1.0),
            check_passed=not bad,
        )

    return probe


@pytest.mark.parametrize("worse", [True, False], ids=["worse-health", "control"])
def test_the_agents_health_reports_hold_a_worse_release_at_the_gate(
    demo_world: Demo, worse: bool
) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    d.devices = FLEET
    d.provision_fleet(v1, sleep=lambda _s: None)
    rng = random.Random(5)
    for dev in d.fleet:
        dev.health_probe = probe_for(dev, worse=worse, rng=rng)
        assert dev.agent is not None
        dev.agent.health_reports.probe = dev.health_probe
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    api = GroupClient(d.url, d.ctx.admin_token, d.ctx.settings.tls.ca_cert)
    criteria = {"min_sample": 5, "health_gate": True}
    plan = {
        "phases": [
            {"name": "canary", "share": 0.5, "soak_seconds": 0, "criteria": criteria},
            {"name": "all", "share": 1.0, "soak_seconds": 0, "criteria": criteria},
        ]
    }
    try:
        dep = api.create_phased_deployment("gated", v2_name, {"all": True}, plan)["id"]
        api.control(dep, "evaluate", {})
        runs = run_fleet(d.fleet, workers=4)  # canary installs; the others report a baseline
        assert sum(r.version_after == "2.0.0" for r in runs) == FLEET // 2
        for dev in d.fleet:  # one more poll: the updated devices report after their update
            dev.run_once()
        decision = api.control(dep, "evaluate", {})
        phase = api.rollout(dep)["phase"]
        timeline = api.timeline(d.fleet[0].config.device_id)
    finally:
        api.close()
    assert any(i["kind"] == "health" for i in timeline)  # sent by the agent itself
    if worse:
        assert (decision["action"], decision["reason"]) == ("wait", "health_gate"), decision
        assert "boot_time" in decision["message"]
        assert "health check" in decision["message"]
        assert phase == 0
    else:  # advanced by this evaluation, or already by the server's own evaluator
        assert phase == 1, decision
