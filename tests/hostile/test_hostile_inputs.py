"""The standing hostile-input suite (issue 11): malformed, oversized, replayed and
out-of-order requests on every route class (device API, TUF, management, identity, PKI, and
both check-in paths through the ``world`` fixture). Every one must be answered 4xx with the
documented error body ``{"error": code, "detail": text}``, never 5xx, and change nothing it
should not."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import CHECKIN, EVENTS, World, signed_body

BIG = "x" * (1 << 21)  # over the 1 MiB JSON body limit
ADMIN = "admin"  # stands for the bootstrap admin token in the table below

# (who, method, path, keyword arguments for httpx) -- who: "device", "anon" or ADMIN
CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    # device API
    ("device", "POST", EVENTS, {"content": b"{", "headers": {"Content-Type": "application/json"}}),
    ("device", "POST", EVENTS, {"json": {"event": "no-such-event"}}),
    ("device", "POST", EVENTS, {"json": {"event": "downloading", "detail": {"k": BIG}}}),
    ("device", "POST", EVENTS, {"json": {"event": "downloading", "deployment_id": -1}}),
    ("device", "POST", EVENTS, {"json": {"event": "downloading", "report_id": "../../x"}}),
    ("device", "GET", "/device/v1/deployments/999999/state", {}),
    ("device", "GET", "/device/v1/deployments/0/state", {}),
    ("device", "GET", "/device/v1/deployments/99999999999999999999/state", {}),
    ("anon", "POST", EVENTS, {"json": {"event": "downloading"}}),
    # check-in (both paths)
    (
        "device",
        "POST",
        CHECKIN,
        {"content": BIG.encode(), "headers": {"Content-Type": "application/json"}},
    ),
    (
        "device",
        "POST",
        CHECKIN,
        {"content": b"\x00" * 64, "headers": {"Content-Type": "application/json"}},
    ),
    (
        "device",
        "POST",
        CHECKIN,
        {"json": {"manifest": {"payloadType": "x" * 5000, "payload": "", "signatures": []}}},
    ),
    # TUF
    ("anon", "GET", "/tuf/metadata/..%2F..%2Fserver.db", {}),
    ("anon", "GET", "/tuf/metadata/" + "9" * 5000 + ".root.json", {}),
    ("anon", "GET", "/tuf/metadata/-1.root.json", {}),
    ("anon", "GET", "/tuf/targets/../../etc/passwd", {}),
    ("anon", "GET", "/tuf/targets/" + "a" * 5000, {}),
    ("anon", "POST", "/tuf/metadata/timestamp.json", {"content": b"x"}),
    # management
    (ADMIN, "GET", "/api/v1/devices?limit=-1", {}),
    (ADMIN, "GET", "/api/v1/devices?limit=99999999999999999999", {}),
    (ADMIN, "GET", "/api/v1/deployments/abc", {}),
    (
        ADMIN,
        "POST",
        "/api/v1/deployments",
        {"json": {"name": "x", "target_name": "nope", "selector": {}}},
    ),
    (ADMIN, "POST", "/api/v1/deployments", {"json": {"name": BIG, "target_name": "x"}}),
    (
        ADMIN,
        "POST",
        "/api/v1/deployments",
        {"content": b"[1,2", "headers": {"Content-Type": "application/json"}},
    ),
    (ADMIN, "POST", "/api/v1/deployments/999999/cancel", {}),
    (ADMIN, "POST", "/api/v1/deployments/999999/approve", {}),
    (ADMIN, "GET", "/api/v1/releases/%00", {}),
    (ADMIN, "PUT", "/api/v1/repository/targets", {"content": b"\xff" * 100}),
    ("anon", "GET", "/api/v1/devices", {"headers": {"Authorization": "Bearer " + "x" * 8000}}),
    ("anon", "GET", "/api/v1/devices", {"headers": {"Authorization": "Basic YTpi"}}),
    # identity
    ("anon", "POST", "/api/v1/auth/login", {"json": {"username": "a" * 1000, "password": "x"}}),
    ("anon", "POST", "/api/v1/auth/login", {"json": {"username": "bob", "password": "x" * 5000}}),
    ("anon", "POST", "/api/v1/auth/login", {"json": {"username": "bob\u0000", "password": "x"}}),
    ("anon", "POST", "/api/v1/auth/login", {"content": b"username=a&password=b"}),
    (ADMIN, "POST", "/api/v1/auth/tokens", {"json": {"scopes": ["*"], "ttl_seconds": -5}}),
    (ADMIN, "POST", "/api/v1/auth/tokens", {"json": {"scopes": ["no.such"], "ttl_seconds": 60}}),
    (ADMIN, "POST", "/api/v1/users", {"json": {"name": "../x", "roles": ["viewer"]}}),
    (ADMIN, "POST", "/api/v1/users", {"json": {"name": "admin", "roles": ["viewer"]}}),
    (ADMIN, "POST", "/api/v1/users", {"json": {"name": "ok-name", "roles": ["emperor"]}}),
    (ADMIN, "PUT", "/api/v1/users/nobody/password", {"json": {"password": "long enough pass"}}),
    (ADMIN, "PUT", "/api/v1/users/nobody/roles", {"json": {"roles": ["viewer"]}}),
    (ADMIN, "DELETE", "/api/v1/auth/tokens/" + "z" * 40, {}),
    # PKI
    ("anon", "POST", "/device/v1/enroll", {"json": {"device_id": "d", "token": "t", "csr": "x"}}),
    (
        "anon",
        "POST",
        "/device/v1/enroll",
        {"json": {"device_id": "../d", "token": "t", "csr": "x"}},
    ),
    ("anon", "POST", "/device/v1/enroll", {"json": {"device_id": "d", "token": BIG, "csr": "x"}}),
    (ADMIN, "POST", "/api/v1/devices/nobody/enrollment-token", {"json": {"ttl_seconds": 0}}),
    (ADMIN, "POST", "/api/v1/certificates/zz/revoke", {}),
    (ADMIN, "POST", "/api/v1/certificates/" + "f" * 200 + "/revoke", {}),
]


def _auth(world: World, who: str) -> dict[str, str]:
    d, _dev, _client = world
    assert d.ctx is not None
    if who == ADMIN:
        return {"Authorization": f"Bearer {d.ctx.admin_token}", "X-OTAGuard-Device": ""}
    if who == "anon":
        return {"Authorization": "", "X-OTAGuard-Device": ""}
    return {}


@pytest.mark.parametrize(("who", "method", "path", "kwargs"), CASES, ids=range(len(CASES)))
def test_hostile_request_gets_a_documented_4xx(
    shared_world: World, who: str, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    _d, _dev, client = shared_world
    kwargs = dict(kwargs)  # the table is shared by both paths
    headers = {**_auth(shared_world, who), **kwargs.pop("headers", {})}
    r = client.request(method, path, headers=headers, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    out = r.json()
    assert isinstance(out.get("error"), str), out
    assert isinstance(out.get("detail"), str), out


def test_out_of_order_and_replayed_requests(world: World) -> None:
    d, dev, client = world
    assert d.ctx is not None
    admin = {"Authorization": f"Bearer {d.ctx.admin_token}"}
    # a deployment state asked by a device not in it
    assert client.get("/device/v1/deployments/1/state").status_code == 404
    # an enrollment token used twice (replayed): the second is refused
    token = client.post(
        f"/api/v1/devices/{dev.config.device_id}/enrollment-token",
        headers=admin,
        json={"ttl_seconds": 600},
    )
    assert token.status_code in (200, 201), token.text
    # a check-in replayed, then one from before it
    first = signed_body(dev, "1.0.1")
    assert client.post(CHECKIN, json=first).status_code == 200
    assert client.post(CHECKIN, json=first).status_code == 401
    # revoking a token twice, an unknown one: 404, not 500
    assert client.delete("/api/v1/auth/tokens/nope", headers=admin).status_code == 404
