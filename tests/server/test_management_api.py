"""The management API over loopback TLS: every endpoint, with bad input answered by a clear
typed 4xx that changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from otaguard.demo import HARDWARE, Demo


@pytest.fixture
def world(demo_world: Demo) -> tuple[Demo, httpx.Client, str, str]:
    d = demo_world
    _v1_name, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    d.devices = 3
    d.provision_fleet(v1)
    assert d.api is not None
    api = d.api.http
    api.put("/api/v1/devices/sim-0001/tags", json={"tags": ["canary", "eu"]}).raise_for_status()
    api.put("/api/v1/devices/sim-0002/tags", json={"tags": ["eu"]}).raise_for_status()
    api.put("/api/v1/devices/sim-0003/tags", json={"tags": []}).raise_for_status()
    return d, api, _v1_name, v2_name


def state(api: httpx.Client) -> dict[str, Any]:
    """Everything the management API shows, to assert a refused request changed nothing."""
    return {
        "devices": api.get("/api/v1/devices").json(),
        "details": [api.get(f"/api/v1/devices/sim-000{i}").json() for i in (1, 2, 3)],
        "releases": api.get("/api/v1/releases").json(),
        "deployments": api.get("/api/v1/deployments").json(),
        "tags": api.get("/api/v1/tags").json(),
    }


def refused(api: httpx.Client, method: str, url: str, status: int, error: str, **kw: Any) -> str:
    r = api.request(method, url, **kw)
    assert r.status_code == status, (method, url, r.status_code, r.text)
    body = r.json()
    assert body["error"] == error, body
    assert body["detail"]
    return str(body["detail"])


def test_releases_list_and_inspect(world: Any) -> None:
    _d, api, v1_name, v2_name = world
    releases = api.get("/api/v1/releases").json()
    assert [r["target_name"] for r in releases] == [v1_name, v2_name]
    r = api.get(f"/api/v1/releases/{v2_name}").json()
    assert (r["version"], r["hardware"], r["security_version"]) == ("2.0.0", [HARDWARE], 1)
    assert len(r["sha256"]) == 64
    assert r["length"] > 0
    assert r["custom"]
    before = state(api)
    refused(api, "GET", "/api/v1/releases/sim-board/none.img", 404, "not_found")
    # Upload = the publish flow: an artifact must match its digest, targets must be signed.
    refused(api, "PUT", "/api/v1/artifacts/" + "0" * 64, 422, "verification", content=b"abc")
    refused(api, "PUT", "/api/v1/artifacts/not-a-digest", 422, "validation", content=b"abc")
    refused(api, "PUT", "/api/v1/repository/targets", 422, "repository", content=b"{}")
    refused(api, "PUT", "/api/v1/repository/root", 422, "repository", content=b"[1]")
    assert state(api) == before


def test_devices_list_filters_pagination_and_detail(world: Any) -> None:
    d, api, _v1, _v2 = world
    page = api.get("/api/v1/devices", params={"limit": 2}).json()
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 0)
    assert [x["id"] for x in page["items"]] == ["sim-0001", "sim-0002"]
    page = api.get("/api/v1/devices", params={"limit": 2, "offset": 2}).json()
    assert [x["id"] for x in page["items"]] == ["sim-0003"]
    eu = api.get("/api/v1/devices", params={"tag": "eu"}).json()
    assert [x["id"] for x in eu["items"]] == ["sim-0001", "sim-0002"]
    assert api.get("/api/v1/devices", params={"hardware": "other"}).json()["total"] == 0
    # Detail carries the status history; the version filter follows signed check-ins.
    d.fleet[0].run_once()
    both = api.get("/api/v1/devices", params={"tag": "eu", "version": "1.0.0"}).json()
    assert [x["id"] for x in both["items"]] == ["sim-0001"]
    detail = api.get("/api/v1/devices/sim-0001").json()
    assert detail["tags"] == ["canary", "eu"]
    assert detail["current_version"] == "1.0.0"
    assert detail["last_seen"] is not None
    assert isinstance(detail["events"], list)
    before = state(api)
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"tag": "x" * 65}):
        refused(api, "GET", "/api/v1/devices", 422, "validation", params=params)
    refused(api, "GET", "/api/v1/devices/nobody", 404, "not_found")
    refused(api, "GET", "/api/v1/devices/bad%20id", 422, "validation")
    assert state(api) == before


def test_device_registration_and_its_refusals(world: Any) -> None:
    _d, api, _v1, _v2 = world
    r = api.post("/api/v1/devices", json={"id": "new-1", "hardware": HARDWARE, "tags": ["lab"]})
    assert r.status_code == 201
    assert len(r.json()["credential"]) >= 32
    before = state(api)
    bad: list[tuple[dict[str, Any], int, str]] = [
        ({"id": "new-1", "hardware": HARDWARE}, 409, "conflict"),
        ({"id": "-bad", "hardware": HARDWARE}, 422, "validation"),
        ({"id": "ok-2", "hardware": ""}, 422, "validation"),
        ({"id": "ok-3", "hardware": HARDWARE, "tags": ["x" * 65]}, 422, "validation"),
        ({"id": "ok-4", "hardware": HARDWARE, "extra": 1}, 422, "validation"),
        (
            {"id": "ok-5", "hardware": HARDWARE, "tags": [str(i) for i in range(33)]},
            422,
            "validation",
        ),
    ]
    for body, status, error in bad:
        refused(api, "POST", "/api/v1/devices", status, error, json=body)
    refused(api, "POST", "/api/v1/devices", 422, "validation", content=b"{not json")
    assert state(api) == before


def test_groups_are_tags(world: Any) -> None:
    _d, api, _v1, _v2 = world
    assert api.get("/api/v1/tags").json() == [
        {"tag": "canary", "devices": 1},
        {"tag": "eu", "devices": 2},
    ]
    out = api.put("/api/v1/devices/sim-0003/tags", json={"tags": ["eu", "canary", "eu"]})
    assert out.json()["tags"] == ["canary", "eu"]
    assert {t["tag"]: t["devices"] for t in api.get("/api/v1/tags").json()} == {
        "canary": 2,
        "eu": 3,
    }
    before = state(api)
    refused(api, "PUT", "/api/v1/devices/nobody/tags", 404, "not_found", json={"tags": ["a"]})
    refused(api, "PUT", "/api/v1/devices/sim-0001/tags", 422, "validation", json={"tags": "a"})
    refused(api, "PUT", "/api/v1/devices/sim-0001/tags", 422, "validation", json={"tags": [" "]})
    assert state(api) == before


def test_deployments_create_progress_devices_cancel(world: Any) -> None:
    d, api, _v1, v2_name = world
    r = api.post(
        "/api/v1/deployments",
        json={"name": "canary-1", "target_name": v2_name, "selector": {"tag": "canary"}},
    )
    assert r.status_code == 201, r.text
    dep = r.json()
    assert (dep["state"], dep["total"], dep["counts"]) == ("active", 1, {"pending": 1})
    assert dep["created_by"] == "admin"
    assert dep["selector"] == {"all": False, "tag": "canary"}
    devices = api.get(f"/api/v1/deployments/{dep['id']}/devices").json()
    assert [(t["device_id"], t["status"]) for t in devices["items"]] == [("sim-0001", "pending")]
    assert (devices["total"], devices["limit"], devices["offset"]) == (1, 100, 0)
    # Progress follows reports.
    d.fleet[0].run_until_settled()
    dep = api.get(f"/api/v1/deployments/{dep['id']}").json()
    assert (dep["state"], dep["counts"]) == ("completed", {"succeeded": 1})
    # A filter deployment, then cancelled before anyone starts.
    eu = api.post(
        "/api/v1/deployments",
        json={"name": "eu", "target_name": v2_name, "selector": {"hardware": HARDWARE}},
    ).json()
    assert eu["total"] == 3
    listed = api.get("/api/v1/deployments").json()
    assert [x["id"] for x in listed["items"]] == [dep["id"], eu["id"]]
    assert listed["total"] == 2
    # Pages and filters: of the deployment, by state; of its devices, by status.
    page = api.get("/api/v1/deployments", params={"limit": 1, "offset": 1}).json()
    assert ([x["id"] for x in page["items"]], page["total"]) == ([eu["id"]], 2)
    active = api.get("/api/v1/deployments", params={"state": "active"}).json()
    assert ([x["id"] for x in active["items"]], active["total"]) == ([eu["id"]], 1)
    targets = api.get(f"/api/v1/deployments/{eu['id']}/devices", params={"limit": 2}).json()
    assert (len(targets["items"]), targets["total"]) == (2, 3)
    rest = api.get(
        f"/api/v1/deployments/{eu['id']}/devices", params={"limit": 2, "offset": 2}
    ).json()
    ids = [t["device_id"] for t in targets["items"] + rest["items"]]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert api.get(
        f"/api/v1/deployments/{eu['id']}/devices", params={"status": "succeeded"}
    ).json() == {"items": [], "total": 0, "limit": 100, "offset": 0}
    refused(api, "GET", "/api/v1/deployments?state=finished", 422, "validation")
    refused(api, "GET", f"/api/v1/deployments/{eu['id']}/devices?limit=0", 422, "validation")
    cancelled = api.post(f"/api/v1/deployments/{eu['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert cancelled["counts"] == {"cancelled": 3}
    before = state(api)
    refused(api, "POST", f"/api/v1/deployments/{eu['id']}/cancel", 409, "conflict")
    refused(api, "POST", "/api/v1/deployments/999/cancel", 404, "not_found")
    refused(api, "GET", "/api/v1/deployments/999", 404, "not_found")
    refused(api, "GET", "/api/v1/deployments/999/devices", 404, "not_found")
    refused(api, "GET", "/api/v1/deployments/0", 422, "validation")
    refused(api, "GET", f"/api/v1/deployments/{2**40}", 422, "validation")
    ok_selector = {"all": True}
    bad: list[tuple[dict[str, Any], int, str]] = [
        (
            {"name": "x", "target_name": "sim-board/none.img", "selector": ok_selector},
            404,
            "not_found",
        ),
        ({"name": "x", "target_name": v2_name, "selector": {}}, 422, "compatibility"),
        (
            {"name": "x", "target_name": v2_name, "selector": {"hardware": "other"}},
            422,
            "compatibility",
        ),
        (
            {"name": "x", "target_name": v2_name, "selector": {"devices": ["nobody"]}},
            422,
            "compatibility",
        ),
        ({"name": "bad name!", "target_name": v2_name, "selector": ok_selector}, 422, "validation"),
        ({"name": "x", "target_name": v2_name, "selector": {"colour": "red"}}, 422, "validation"),
        ({"name": "x", "target_name": v2_name}, 422, "validation"),
    ]
    for body, status, error in bad:
        refused(api, "POST", "/api/v1/deployments", status, error, json=body)
    assert state(api) == before


def test_oversized_json_bodies_are_refused_before_parsing(world: Any) -> None:
    _d, api, _v1, _v2 = world
    before = state(api)
    huge = b'{"tags": ["' + b"a" * (2 << 20) + b'"]}'
    detail = refused(api, "PUT", "/api/v1/devices/sim-0001/tags", 413, "too_large", content=huge)
    assert "larger than" in detail

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"tags": ["'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"]}'

    refused(api, "PUT", "/api/v1/devices/sim-0001/tags", 413, "too_large", content=chunks())
    assert state(api) == before


def test_openapi_document_is_precise(world: Any) -> None:
    _d, api, _v1, _v2 = world
    doc = api.get("/openapi.json").json()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            responses = op["responses"]
            ok = [c for c in responses if c.startswith("2")]
            assert ok, (method, path)
            if path.startswith(("/api/", "/device/")):
                for code in ("401", "422"):
                    ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorOut"), (method, path, code)
            for code in ok:
                content = responses[code].get("content", {})
                if "application/json" in content and path.startswith(("/api/", "/device/")):
                    assert content["application/json"]["schema"], (method, path)
    schemas = doc["components"]["schemas"]
    assert schemas["DeviceIn"]["additionalProperties"] is False
    assert schemas["SignedManifest"]["properties"]["signatures"]["maxItems"] == 8
