"""Which devices the server wakes, and when: every route and the evaluator note what changed
(recorded here instead of published), and ``store/wakeups.py`` resolves a deployment to the
devices it offers to with the check-in's own rule. No broker needed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from otaguard.fleet.status import UpdateEvent
from otaguard.server.app import create_app
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.server.push import NoPush
from otaguard.store.checkin import CheckinRequest, Reported

HW = "sim-board"
NEW = "sim-board/firmware-2.0.0.img"
IDS = [f"d{i:02d}" for i in range(20)]


class Recorder(NoPush):
    def __init__(self) -> None:
        self.notes: list[tuple[str, Any]] = []

    def devices(self, device_ids: Iterable[str]) -> None:
        self.notes.append(("devices", sorted(device_ids)))

    def deployment(self, deployment_id: int) -> None:
        self.notes.append(("deployment", deployment_id))

    def cancelled(self, deployment_id: int) -> None:
        self.notes.append(("cancelled", deployment_id))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ServerContext, TestClient, Recorder]]:
    ctx = ServerContext.open(
        ServerSettings(data_dir=tmp_path / "server", port=0, rollout_interval=3600.0)
    )
    for name, version in (("sim-board/firmware-1.0.0.img", "1.0.0"), (NEW, "2.0.0")):
        ctx.store.upsert_release(
            name, version=version, hardware=[HW], security_version=0, sha256="0" * 64,
            length=1, custom={},
        )  # fmt: skip
    for i, device_id in enumerate(IDS):
        ctx.store.register_device(device_id, HW, f"credential-{i:04d}-0123456789")
    report = Reported(HW, "1.0.0", "a", 0, "sim")
    ctx.store.check_in_many([CheckinRequest(d, lambda _k: report) for d in IDS])
    try:
        with TestClient(
            create_app(ctx), headers={"Authorization": f"Bearer {ctx.admin_token}"}
        ) as c:
            recorder = Recorder()
            ctx.push = recorder
            yield ctx, c, recorder
    finally:
        ctx.close()


def deploy(c: TestClient, **extra: Any) -> int:
    body = {"name": "r", "target_name": NEW, "selector": {"all": True}, **extra}
    r = c.post("/api/v1/deployments", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


PLAN = {
    "phases": [
        {"name": "canary", "share": 0.1, "soak_seconds": 0},
        {"name": "all", "share": 1.0, "soak_seconds": 0},
    ]
}


def test_plain_deployment_wakes_every_device_it_offers_to(
    world: tuple[ServerContext, TestClient, Recorder],
) -> None:
    ctx, c, rec = world
    dep = deploy(c)
    assert rec.notes == [("deployment", dep)]
    assert ctx.store.wakeups.offered(dep) == IDS
    ctx.store.monitoring.set_accepted("d00", False)
    ctx.store.monitoring.decommission("d01")
    assert ctx.store.wakeups.offered(dep) == IDS[2:]  # as the check-in: not offered, not woken
    r = c.post(f"/api/v1/deployments/{dep}/cancel")
    assert r.status_code == 200, r.text
    assert rec.notes[-1] == ("cancelled", dep)
    assert ctx.store.wakeups.offered(dep) == []


def test_scheduled_deployment_is_woken_when_its_start_comes(
    world: tuple[ServerContext, TestClient, Recorder],
) -> None:
    ctx, c, _rec = world
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    dep = deploy(c, start_at=start.isoformat())
    assert ctx.store.wakeups.offered(dep) == []  # not yet
    assert ctx.store.wakeups.offered(dep, now=start) == IDS
    before = start - dt.timedelta(seconds=5)
    assert ctx.store.wakeups.started_between(before, start) == [dep]
    assert ctx.store.wakeups.started_between(start, start + dt.timedelta(seconds=5)) == []


def test_phased_rollout_wakes_each_admitted_batch_and_abort_the_started(
    world: tuple[ServerContext, TestClient, Recorder],
) -> None:
    ctx, c, rec = world
    dep = deploy(c, plan=PLAN)
    assert ctx.store.wakeups.offered(dep) == []  # nobody admitted before the evaluator runs
    r = c.post(f"/api/v1/deployments/{dep}/evaluate")
    assert r.json()["admitted"] == 2, r.text
    kind, admitted = rec.notes[-1]
    assert kind == "devices"
    assert admitted == ctx.store.wakeups.offered(dep)
    assert len(admitted) == 2
    started = admitted[0]
    ctx.store.record_event(
        started, event=UpdateEvent.DOWNLOADING, deployment_id=dep, version="1.0.0", slot="a",
        detail={},
    )  # fmt: skip
    assert c.post(f"/api/v1/deployments/{dep}/pause", json={}).status_code == 200
    assert ctx.store.wakeups.offered(dep) == []  # paused: nothing offered to new starters
    assert c.post(f"/api/v1/deployments/{dep}/resume", json={}).status_code == 200
    assert ("deployment", dep) in rec.notes
    assert c.post(f"/api/v1/deployments/{dep}/abort", json={}).status_code == 200
    assert rec.notes[-1] == ("cancelled", dep)
    assert ctx.store.wakeups.cancelled_under_way(dep) == [started]


def test_retry_wakes_the_device(world: tuple[ServerContext, TestClient, Recorder]) -> None:
    ctx, c, rec = world
    dep = deploy(c)
    ctx.store.record_event(
        "d05", event=UpdateEvent.FAILED, deployment_id=dep, version="1.0.0", slot="a",
        detail={"reason": "disk"},
    )  # fmt: skip
    r = c.post(f"/api/v1/deployments/{dep}/devices/d05/retry")
    assert r.status_code == 200, r.text
    assert rec.notes[-1] == ("devices", ["d05"])


def test_accepting_a_device_wakes_it(world: tuple[ServerContext, TestClient, Recorder]) -> None:
    _ctx, c, rec = world
    r = c.put("/api/v1/devices/d03/acceptance", json={"accepted": True})
    assert r.status_code == 200, r.text
    assert rec.notes == [("devices", ["d03"])]
    assert c.put("/api/v1/devices/d03/acceptance", json={"accepted": False}).status_code == 200
    assert rec.notes == [("devices", ["d03"])]  # a rejection wakes nobody
