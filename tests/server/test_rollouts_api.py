"""Phased rollouts through the real application (in process) with a few hundred lightweight
devices: they check in through the store's group commit and report like agents would. The
evaluator is driven through ``POST .../evaluate`` so each step is deterministic."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from otaguard.fleet.status import UpdateEvent
from otaguard.server.app import create_app
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.store.checkin import CheckinRequest, Reported

HW = "sim-board"
OLD, NEW = "sim-board/firmware-1.0.0.img", "sim-board/firmware-2.0.0.img"
FLEET = 200


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ServerContext, TestClient]]:
    settings = ServerSettings(data_dir=tmp_path / "server", port=0, rollout_interval=3600.0)
    ctx = ServerContext.open(settings)
    for name, version in ((OLD, "1.0.0"), (NEW, "2.0.0")):
        ctx.store.upsert_release(
            name,
            version=version,
            hardware=[HW],
            security_version=0,
            sha256="0" * 64,
            length=1,
            custom={},
        )
    for i in range(FLEET):
        ctx.store.register_device(f"d{i:04d}", HW, f"credential-{i:04d}-0123456789")
    check_in(ctx, [f"d{i:04d}" for i in range(FLEET)], "1.0.0")
    try:
        with TestClient(
            create_app(ctx), headers={"Authorization": f"Bearer {ctx.admin_token}"}
        ) as c:
            yield ctx, c
    finally:
        ctx.close()


def check_in(ctx: ServerContext, ids: list[str], version: str) -> dict[str, int]:
    """Check the devices in (one batch); the deployment each was offered, by device."""
    report = Reported(HW, version, "a", 0, "sim")
    outcomes = ctx.store.check_in_many([CheckinRequest(d, lambda _k: report) for d in ids])
    return {d: o.offer.deployment_id for d, o in zip(ids, outcomes, strict=True) if o.offer}


def report(ctx: ServerContext, device: str, dep: int, event: UpdateEvent, version: str) -> None:
    ctx.store.record_event(
        device, event=event, deployment_id=dep, version=version, slot="b", detail={}
    )


def plan(soak: int = 0, **criteria: Any) -> dict[str, Any]:
    crit = {"min_sample": 5, **criteria}
    return {
        "phases": [
            {"name": "canary", "share": 0.1, "soak_seconds": soak, "criteria": crit},
            {"name": "half", "share": 0.5, "soak_seconds": soak, "criteria": crit},
            {"name": "all", "share": 1.0, "soak_seconds": soak, "criteria": crit},
        ]
    }


def deploy(c: TestClient, body_plan: dict[str, Any] | None, **extra: Any) -> int:
    body = {"name": "r2", "target_name": NEW, "selector": {"all": True}, **extra}
    if body_plan is not None:
        body["plan"] = body_plan
    r = c.post("/api/v1/deployments", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def evaluate(c: TestClient, dep: int) -> dict[str, Any]:
    r = c.post(f"/api/v1/deployments/{dep}/evaluate")
    assert r.status_code == 200, r.text
    return dict(r.json())


def run_round(ctx: ServerContext, dep: int, fails: set[str]) -> int:
    """Every device checks in; each offered device installs (failing if in ``fails``)."""
    ids = [f"d{i:04d}" for i in range(FLEET)]
    offered = check_in(ctx, ids, "1.0.0")
    for device, dep_id in offered.items():
        assert dep_id == dep
        if device in fails:
            report(ctx, device, dep, UpdateEvent.FAILED, "1.0.0")
        else:
            report(ctx, device, dep, UpdateEvent.COMMITTED, "2.0.0")
    return len(offered)


def test_a_good_release_completes_every_phase_unattended(world: Any) -> None:
    ctx, c = world
    dep = deploy(c, plan())
    assert check_in(ctx, ["d0000", "d0001"], "1.0.0") == {}  # nothing admitted yet
    offered_per_round = []
    for _ in range(10):
        evaluate(c, dep)
        offered_per_round.append(run_round(ctx, dep, set()))
        if c.get(f"/api/v1/deployments/{dep}").json()["state"] != "active":
            break
    evaluate(c, dep)
    out = c.get(f"/api/v1/deployments/{dep}").json()
    assert (out["state"], out["outcome"]) == ("completed", "all_succeeded")
    assert offered_per_round[0] == 20  # the 10 % canary phase first
    view = c.get(f"/api/v1/deployments/{dep}/rollout").json()
    assert [p["counts"]["succeeded"] for p in view["phases"]] == [20, 80, 100]
    actions = [e.action for e in ctx.identity.audit_entries() if e.actor == "system:rollout"]
    assert actions == ["rollout.advance", "rollout.advance", "rollout.complete"]


def test_a_bad_release_is_paused_in_its_first_phase(world: Any) -> None:
    ctx, c = world
    dep = deploy(c, plan())
    rng = random.Random(7)
    fails = {f"d{i:04d}" for i in range(FLEET) if rng.random() < 0.5}
    evaluate(c, dep)
    run_round(ctx, dep, fails)
    decision = evaluate(c, dep)
    assert (decision["action"], decision["reason"]) == ("pause", "failure_rate")
    view = c.get(f"/api/v1/deployments/{dep}/rollout").json()
    assert (view["status"], view["phase"]) == ("paused", 0)
    affected = sum(p["counts"]["failed"] for p in view["phases"])
    assert 0 < affected < 0.1 * FLEET
    assert run_round(ctx, dep, fails) == 0  # paused: nobody new is offered it
    # Abort: devices that have not installed are told to skip it.
    r = c.post(f"/api/v1/deployments/{dep}/abort", json={"note": "bad build"})
    assert r.status_code == 200, r.text
    out = c.get(f"/api/v1/deployments/{dep}").json()
    assert (out["state"], out["outcome"]) == ("aborted", "aborted")
    assert c.get(f"/api/v1/deployments/{dep}/devices?status=cancelled").json()["total"] == 180
    assert c.post(f"/api/v1/deployments/{dep}/resume", json={}).status_code == 409
    audited = [e.action for e in ctx.identity.audit_entries()]
    assert "rollout.pause" in audited
    assert "deployment.control" in audited


def test_resume_acknowledges_and_pacing_limits_starts(world: Any) -> None:
    ctx, c = world
    body = plan()
    body["limits"] = {"max_starts_per_minute": 6.0, "start_burst": 6}
    dep = deploy(c, body)
    assert evaluate(c, dep)["admitted"] == 6  # the burst, not the phase's 20
    assert len(check_in(ctx, [f"d{i:04d}" for i in range(FLEET)], "1.0.0")) == 6
    assert c.post(f"/api/v1/deployments/{dep}/pause", json={"note": "look"}).status_code == 200
    assert evaluate(c, dep)["reason"] == "paused"
    r = c.post(f"/api/v1/deployments/{dep}/resume", json={})
    assert r.json()["status"] == "running"


def test_health_gate_holds_a_release_that_worsens_boot_time(world: Any) -> None:
    ctx, c = world
    dep = deploy(c, plan(health_gate=True))
    evaluate(c, dep)
    run_round(ctx, dep, set())
    rng = random.Random(3)
    creds = {f"d{i:04d}": f"credential-{i:04d}-0123456789" for i in range(FLEET)}
    succeeded = {
        t["device_id"]
        for t in c.get(f"/api/v1/deployments/{dep}/devices?status=succeeded&limit=1000").json()[
            "items"
        ]
    }
    for device, credential in creds.items():
        updated = device in succeeded
        body = {
            "version": "2.0.0" if updated else "1.0.0",
            "boot_seconds": rng.gauss(30.0 if updated else 20.0, 1.0),
            "restarts": 0,
            "check_passed": True,
        }
        headers = {"Authorization": f"Bearer {credential}", "X-OTAGuard-Device": device}
        r = c.post("/device/v1/health", json=body, headers=headers)
        assert r.status_code == 201, r.text
    decision = evaluate(c, dep)
    assert (decision["action"], decision["reason"]) == ("wait", "health_gate")
    assert "boot_time" in decision["message"]
    assert c.get(f"/api/v1/deployments/{dep}/rollout").json()["phase"] == 0
    timeline = c.get("/api/v1/devices/d0000/timeline").json()
    assert {"health", "checkin"} <= {i["kind"] for i in timeline}


def test_production_phase_needs_a_second_person(world: Any) -> None:
    ctx, c = world
    body = plan()
    body["production"] = True
    dep = deploy(c, body)
    evaluate(c, dep)
    run_round(ctx, dep, set())
    assert evaluate(c, dep)["reason"] == "awaiting_approval"
    r = c.post(f"/api/v1/deployments/{dep}/advance", json={"force": True})
    assert r.status_code == 409
    ctx.identity.add_user("bob", ["approver"], password="correct horse battery staple 1")
    token = ctx.identity.create_token("bob", scopes=["*"]).token
    r = c.post(f"/api/v1/deployments/{dep}/approve", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert evaluate(c, dep)["action"] == "advance"


def test_downgrade_start_at_acceptance_and_decommission(world: Any) -> None:
    ctx, c = world
    check_in(ctx, ["d0000"], "3.0.0")
    body = {"name": "old", "target_name": NEW, "selector": {"devices": ["d0000", "d0001"]}}
    r = c.post("/api/v1/deployments", json=body)
    assert r.status_code == 422
    assert "allow_downgrade" in r.json()["detail"]
    r = c.post(
        "/api/v1/deployments",
        json={**body, "start_at": "2999-01-01T00:00:00Z", "allow_downgrade": True},
    )
    assert r.status_code == 201, r.text
    dep = r.json()["id"]
    assert check_in(ctx, ["d0001"], "1.0.0") == {}  # scheduled for later
    ctx.store.cancel_deployment(dep)
    dep = deploy(c, None, selector={"devices": ["d0001", "d0002"]})
    assert c.put("/api/v1/devices/d0001/acceptance", json={"accepted": False}).status_code == 200
    assert check_in(ctx, ["d0001", "d0002"], "1.0.0") == {"d0002": dep}
    r = c.post("/api/v1/devices/d0002/decommission")
    assert r.status_code == 200, r.text
    assert check_in(ctx, ["d0002"], "1.0.0") == {}
    assert c.post("/api/v1/devices/d0002/decommission").status_code == 409


def test_alerts_are_listed_once_and_acknowledged(world: Any) -> None:
    from otaguard.fleet.alerts import Alert, AlertKind, Severity

    ctx, c = world
    alert = Alert(AlertKind.DOWNGRADE_ATTEMPT, Severity.CRITICAL, "device:d0001", "downgrade", {})
    assert len(ctx.store.monitoring.raise_alerts([alert])) == 1
    assert ctx.store.monitoring.raise_alerts([alert]) == []  # deduplicated by key
    page = c.get("/api/v1/alerts").json()
    assert page["total"] == 1
    assert page["items"][0]["count"] == 2
    alert_id = page["items"][0]["id"]
    r = c.post(f"/api/v1/alerts/{alert_id}/acknowledge")
    assert r.status_code == 200
    assert r.json()["acknowledged_by"] == "admin"
    assert c.post(f"/api/v1/alerts/{alert_id}/acknowledge").status_code == 409
    assert c.get("/api/v1/alerts?acknowledged=false").json()["total"] == 0


def test_new_devices_wait_for_acceptance_when_the_server_asks(world: Any) -> None:
    ctx, c = world
    ctx.settings.require_device_acceptance = True
    r = c.post("/api/v1/devices", json={"id": "new-1", "hardware": HW})
    assert r.status_code == 201, r.text
    dep = deploy(c, None, selector={"devices": ["new-1"]})
    assert check_in(ctx, ["new-1"], "1.0.0") == {}  # not accepted yet: nothing offered
    assert c.put("/api/v1/devices/new-1/acceptance", json={"accepted": True}).status_code == 200
    assert check_in(ctx, ["new-1"], "1.0.0") == {"new-1": dep}


def test_pacing_admits_devices_in_the_spread_order(world: Any) -> None:
    """Strata (hardware, version) take turns even when pacing lets only a few start: the
    first two admitted run different versions (in id order both would run 1.0.0)."""
    ctx, c = world
    check_in(ctx, [f"d{i:04d}" for i in range(100, FLEET)], "1.5.0")
    body = plan()
    body["limits"] = {"max_starts_per_minute": 2.0, "start_burst": 2}
    dep = deploy(c, body)
    assert evaluate(c, dep)["admitted"] == 2
    offered = check_in(ctx, [f"d{i:04d}" for i in range(FLEET)], "1.0.0")
    versions = {"1.0.0" if int(d[1:]) < 100 else "1.5.0" for d in offered}
    assert versions == {"1.0.0", "1.5.0"}
