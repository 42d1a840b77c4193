"""Compatibility checks when a deployment is created: devices that could never install the
release (unsupported hardware, a reported security version above the release's, unknown ids)
are left out with a reason; when none is left the request is refused and nothing changes."""

from __future__ import annotations

from typing import Any

from otaguard.demo import Demo
from otaguard.fleet.compatibility import (
    Candidate,
    ExclusionReason,
    select_compatible,
)


def test_rule_splits_candidates_with_reasons() -> None:
    sel = select_compatible(
        [
            Candidate("d3", "board-b", 0),
            Candidate("d1", "board-a", 0),
            Candidate("d2", "board-a", 3),
            Candidate("d4", "board-a", 2),
        ],
        release_hardware=["board-a"],
        release_security_version=2,
        unknown=["ghost", "ghost"],
    )
    assert sel.included == ("d1", "d4")  # equal security version is allowed
    assert [(e.device_id, e.reason) for e in sel.excluded] == [
        ("d2", ExclusionReason.SECURITY_VERSION),
        ("d3", ExclusionReason.HARDWARE),
        ("ghost", ExclusionReason.UNKNOWN_DEVICE),
    ]
    assert "security version 3" in sel.excluded[0].detail
    assert sel.summary() == "1 hardware, 1 security_version, 1 unknown_device"
    assert select_compatible([], release_hardware=["x"], release_security_version=0).summary() == ""


def _state(api: Any) -> dict[str, Any]:
    return {
        "deployments": api.get("/api/v1/deployments").json(),
        "devices": api.get("/api/v1/devices").json(),
    }


def test_deployment_leaves_out_devices_that_cannot_install(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    hotfix_name, _ = d.release("1.1.0")  # security version 0: below what v2 raised the fuses to
    d.devices = 3
    d.provision_fleet(v1)
    assert d.api is not None
    api = d.api.http
    first = d.fleet[0]
    api.post(
        "/api/v1/deployments",
        json={"name": "to-v2", "target_name": v2_name, "selector": {"devices": ["sim-0001"]}},
    ).raise_for_status()
    first.run_until_settled()
    first.run_once()  # the next signed check-in reports the raised security version
    assert api.get("/api/v1/devices/sim-0001").json()["security_version"] == 1
    r = api.post("/api/v1/devices", json={"id": "other-hw", "hardware": "other-board", "tags": []})
    assert r.status_code == 201, r.text

    r = api.post(
        "/api/v1/deployments",
        json={"name": "hotfix", "target_name": hotfix_name, "selector": {"all": True}},
    )
    assert r.status_code == 201, r.text
    dep = r.json()
    assert (dep["total"], dep["counts"]) == (2, {"pending": 2})
    assert [(e["device_id"], e["reason"]) for e in dep["excluded"]] == [
        ("other-hw", "hardware"),
        ("sim-0001", "security_version"),
    ]
    targets = api.get(f"/api/v1/deployments/{dep['id']}/devices").json()["items"]
    assert [t["device_id"] for t in targets] == ["sim-0002", "sim-0003"]

    r = api.post(
        "/api/v1/deployments",
        json={
            "name": "picked",
            "target_name": v2_name,
            "selector": {"devices": ["sim-0002", "ghost"]},
        },
    )
    assert r.status_code == 201, r.text
    assert [(e["device_id"], e["reason"]) for e in r.json()["excluded"]] == [
        ("ghost", "unknown_device")
    ]

    before = _state(api)
    r = api.post(
        "/api/v1/deployments",
        json={
            "name": "downgrade",
            "target_name": hotfix_name,
            "selector": {"devices": ["sim-0001", "ghost"]},
        },
    )
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "compatibility"
    assert "1 security_version, 1 unknown_device" in body["detail"]
    assert _state(api) == before
