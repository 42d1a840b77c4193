"""Saved dynamic groups through the real application (in process): create, list, show, change,
delete, preview members; a group as a deployment's selector, evaluated once at creation; every
change audited; bad filters refused naming every problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from otaguard.server.app import create_app
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.store.checkin import CheckinRequest, Reported

HW = "sim-board"
NEW = "sim-board/firmware-2.0.0.img"
OLD_BOARDS = {
    "match": "all",
    "conditions": [
        {"attribute": "hardware", "op": "eq", "value": HW},
        {"attribute": "version", "op": "lt", "value": "1.10"},
        {"attribute": "tag", "op": "has", "value": "eu"},
    ],
}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[ServerContext, TestClient]]:
    ctx = ServerContext.open(ServerSettings(data_dir=tmp_path / "server", port=0))
    ctx.store.upsert_release(
        NEW, version="2.0.0", hardware=[HW], security_version=0, sha256="0" * 64, length=1,
        custom={},
    )  # fmt: skip
    # d0..d5: versions 1.2, 1.9, 1.10, 1.2, 1.9, 1.10; even ones tagged eu; d6 never checked in
    for i in range(7):
        ctx.store.register_device(f"d{i}", HW, f"credential-{i}-0123456789", ["eu"][: 1 - i % 2])
    for i in range(6):
        version = ("1.2", "1.9", "1.10")[i % 3]
        report = Reported(HW, version, "a", 0, "sim")
        ctx.store.check_in_many([CheckinRequest(f"d{i}", lambda _k, r=report: r)])
    ctx.store.register_device("other", "other-board", "credential-other-0123456789", ["eu"])
    try:
        with TestClient(
            create_app(ctx), headers={"Authorization": f"Bearer {ctx.admin_token}"}
        ) as c:
            yield ctx, c
    finally:
        ctx.close()


def members(c: TestClient, name: str) -> list[str]:
    r = c.get(f"/api/v1/dynamic-groups/{name}/devices")
    assert r.status_code == 200, r.text
    return [d["id"] for d in r.json()["items"]]


def test_create_preview_change_and_delete(world: Any) -> None:
    ctx, c = world
    r = c.post(
        "/api/v1/dynamic-groups",
        json={"name": "eu-old", "description": "EU boards below 1.10", "filter": OLD_BOARDS},
    )
    assert r.status_code == 201, r.text
    assert r.json()["summary"] == "hardware = sim-board and version < 1.10 and tag has eu"
    # 1.2 and 1.9 are below 1.10 in PEP 440 order (as text "1.10" < "1.2")
    assert members(c, "eu-old") == ["d0", "d4"]
    assert (
        c.post("/api/v1/dynamic-groups", json={"name": "eu-old", "filter": OLD_BOARDS}).status_code
        == 409
    )
    page = c.get("/api/v1/dynamic-groups").json()
    assert (page["total"], page["items"][0]["name"]) == (1, "eu-old")
    # membership is live for a preview: tag d2 (1.10) no, d1 (1.9) yes
    c.put("/api/v1/devices/d1/tags", json={"tags": ["eu"]})
    assert members(c, "eu-old") == ["d0", "d1", "d4"]
    # change: any of two conditions
    anyf = {
        "match": "any",
        "conditions": [
            {"attribute": "hardware", "op": "eq", "value": "other-board"},
            {"attribute": "version", "op": "exists", "value": False},
        ],
    }
    r = c.put("/api/v1/dynamic-groups/eu-old", json={"description": "x", "filter": anyf})
    assert r.status_code == 200, r.text
    assert members(c, "eu-old") == ["d6", "other"]
    assert c.get("/api/v1/dynamic-groups/eu-old").json()["filter"] == anyf
    assert c.delete("/api/v1/dynamic-groups/eu-old").status_code == 204
    assert c.get("/api/v1/dynamic-groups/eu-old").status_code == 404
    assert c.get("/api/v1/dynamic-groups/eu-old/devices").status_code == 404
    assert c.delete("/api/v1/dynamic-groups/eu-old").status_code == 404
    audited = [
        (e.outcome, e.detail.get("group"))
        for e in ctx.identity.audit_entries()
        if e.action == "group.dynamic.write"
    ]
    # create, the refused second create, change, delete, the refused second delete
    assert audited == [
        ("ok", "eu-old"),
        ("http_409", None),
        ("ok", "eu-old"),
        ("ok", "eu-old"),
        ("http_404", None),
    ]
    create = next(e for e in ctx.identity.audit_entries() if e.detail.get("group") == "eu-old")
    assert create.detail["filter"].startswith("hardware = sim-board")


def test_a_filter_that_makes_no_sense_is_refused_naming_each_problem(world: Any) -> None:
    _, c = world
    bad = {
        "conditions": [
            {"attribute": "tag", "op": "lt", "value": "eu"},
            {"attribute": "version", "op": "ge", "value": "latest"},
        ]
    }
    r = c.post("/api/v1/dynamic-groups", json={"name": "bad", "filter": bad})
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "group_filter"
    assert "condition 1: operator 'lt' does not apply to tag" in r.json()["detail"]
    assert "condition 2: 'latest' is not a PEP 440 version" in r.json()["detail"]
    assert c.get("/api/v1/dynamic-groups").json()["total"] == 0  # nothing stored
    r = c.post("/api/v1/dynamic-groups", json={"name": "x", "filter": {"conditions": []}})
    assert r.status_code == 422  # shape: at least one condition


def test_a_group_selects_a_deployments_devices_once(world: Any) -> None:
    ctx, c = world
    assert (
        c.post("/api/v1/dynamic-groups", json={"name": "eu-old", "filter": OLD_BOARDS}).status_code
        == 201
    )
    body = {"name": "g", "target_name": NEW, "selector": {"group": "eu-old"}}
    r = c.post("/api/v1/deployments", json=body)
    assert r.status_code == 201, r.text
    dep = r.json()
    assert dep["selector"] == {"all": False, "group": "eu-old", "group_filter": OLD_BOARDS}
    targets = c.get(f"/api/v1/deployments/{dep['id']}/devices").json()["items"]
    assert [t["device_id"] for t in targets] == ["d0", "d4"]
    # evaluated once: a device joining the group later is not added, one leaving stays
    c.put("/api/v1/devices/d1/tags", json={"tags": ["eu"]})
    c.put("/api/v1/devices/d0/tags", json={"tags": []})
    c.delete("/api/v1/dynamic-groups/eu-old")
    targets = c.get(f"/api/v1/deployments/{dep['id']}/devices").json()["items"]
    assert [t["device_id"] for t in targets] == ["d0", "d4"]
    create = [e for e in ctx.identity.audit_entries() if e.action == "deployment.create"]
    assert create[-1].detail["group"] == "eu-old"
    # a group with the other selector keys: both must hold
    c.post("/api/v1/dynamic-groups", json={"name": "eu", "filter": {"conditions": [
        {"attribute": "tag", "op": "has", "value": "eu"}]}})  # fmt: skip
    r = c.post(
        "/api/v1/deployments",
        json={**body, "name": "h", "selector": {"group": "eu", "hardware": HW}},
    )
    assert r.status_code == 201, r.text
    targets = c.get(f"/api/v1/deployments/{r.json()['id']}/devices").json()["items"]
    assert [t["device_id"] for t in targets] == ["d1", "d2", "d4", "d6"]  # not "other"


def test_an_unknown_or_empty_group_creates_nothing(world: Any) -> None:
    _, c = world
    body = {"name": "g", "target_name": NEW, "selector": {"group": "nope"}}
    r = c.post("/api/v1/deployments", json=body)
    assert r.status_code == 404
    assert "no group nope" in r.json()["detail"]
    c.post("/api/v1/dynamic-groups", json={"name": "none", "filter": {"conditions": [
        {"attribute": "version", "op": "ge", "value": "9"}]}})  # fmt: skip
    r = c.post("/api/v1/deployments", json={**body, "selector": {"group": "none"}})
    assert r.status_code == 422
    assert c.get("/api/v1/deployments").json()["total"] == 0


def test_decommissioned_devices_are_never_members(world: Any) -> None:
    _, c = world
    c.post("/api/v1/dynamic-groups", json={"name": "all-sim", "filter": {"conditions": [
        {"attribute": "hardware", "op": "eq", "value": HW}]}})  # fmt: skip
    assert len(members(c, "all-sim")) == 7
    assert c.post("/api/v1/devices/d3/decommission").status_code == 200
    assert "d3" not in members(c, "all-sim")
    page = c.get("/api/v1/dynamic-groups/all-sim/devices?limit=2&offset=2").json()
    assert (page["total"], [d["id"] for d in page["items"]]) == (6, ["d2", "d4"])
