"""The check-in's HTTP edges, on both paths (server/checkin.py's lean layer in front of the
framework, and the FastAPI route): body limits, malformed bodies, refused identities (counted
and audited), a failing database, and a client certificate that expires on a live
connection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from kit.checkin import CheckinWorld, checkin_world
from otaguard.crypto.device_key import load_device_key
from otaguard.demo import HARDWARE, Demo
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.errors import AuthError
from otaguard.identity import ca
from otaguard.identity.authority import DeviceAuthority
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.net.tls import tls_context
from otaguard.server import device_identity
from otaguard.server.context import ServerSettings
from otaguard.server.peercert import TLS_EXTENSION
from otaguard.sim.device import SimulatedDevice

CHECKIN = "/device/v1/checkin"


@pytest.fixture(params=[True, False], ids=["lean", "framework"])
def world(demo_world: Demo, request: pytest.FixtureRequest) -> Iterator[CheckinWorld]:
    with checkin_world(demo_world, lean=request.param) as w:
        yield w


def signed_body(dev: SimulatedDevice, version: str = "1.0.0") -> dict[str, Any]:
    m = VersionManifest.create(
        device_id=dev.config.device_id,
        hardware=HARDWARE,
        version=version,
        slot="a",
        security_version=0,
        agent_version="test",
    )
    return {"manifest": sign_manifest(m, load_device_key(dev.config.manifest_key_path))}


def audit_actions(d: Demo) -> list[tuple[str, str, str]]:
    assert d.ctx is not None
    return [(e.actor, e.action, e.target) for e in d.ctx.identity.audit_entries()]


def test_a_check_in_is_recorded(world: Any) -> None:
    d, dev, client = world
    r = client.post(CHECKIN, json=signed_body(dev, "1.0.7"))
    assert r.status_code == 200, r.text
    assert r.json()["action"] == "none"
    assert d.ctx.store.get_device(dev.config.device_id).current_version == "1.0.7"


def test_oversized_bodies_are_refused_before_anything_is_recorded(world: Any) -> None:
    d, dev, client = world
    big = b'{"manifest": "' + b"x" * (1 << 20) + b'"}'
    r = client.post(CHECKIN, content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["error"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"manifest": "'
        for _ in range(20):
            yield b"y" * (64 << 10)
        yield b'"}'

    r = client.post(CHECKIN, content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert d.ctx.store.get_device(dev.config.device_id).last_seen is None


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"manifest": {"payload": 1}}', b'{"manifest": null, "extra": 1}'],
)
def test_malformed_bodies_get_a_validation_error(world: Any, body: bytes) -> None:
    _d, _dev, client = world
    r = client.post(CHECKIN, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    out = r.json()
    assert out["error"] == "validation"
    assert out["errors"]
    assert all(e["loc"][0] == "body" for e in out["errors"])


def test_a_body_that_is_not_json_is_a_bad_request(world: Any) -> None:
    """Invalid JSON was 422 on one path and 400 on the other (issue 11 item 9): 400 on both;
    tests/hostile/test_checkin_parity.py has the full table."""
    _d, _dev, client = world
    r = client.post(CHECKIN, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"] == "bad_request"


def test_refused_identities_are_counted_and_audited(world: Any) -> None:
    d, dev, client = world
    body = signed_body(dev)
    anonymous = client.post(CHECKIN, json=body, headers={"Authorization": ""})
    wrong = client.post(CHECKIN, json=body, headers={"Authorization": "Bearer not-the-secret"})
    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert anonymous.json()["error"] == wrong.json()["error"] == "auth"
    # aggregated per address and window (issue 11): the actor is the address, the device id
    # only what the request claimed; the summary row carries the count
    d.ctx.refusals.flush()
    refused = [e for e in d.ctx.identity.audit_entries() if e.action == "device.auth.refused"]
    assert [(e.actor, e.target) for e in refused] == [("client:127.0.0.1", f"POST {CHECKIN}")] * 2
    assert [e.detail["count"] for e in refused] == [1, 2]
    assert {e.detail["claimed"] for e in refused} == {dev.config.device_id}
    assert "not-the-secret" not in repr(list(d.ctx.identity.audit_entries()))
    assert d.ctx.store.get_device(dev.config.device_id).last_seen is None


def test_a_failing_database_answers_500_without_details(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, dev, client = world

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("connection to secret-db-host lost")

    monkeypatch.setattr(d.ctx.store, "check_in_many", broken)
    r = client.post(CHECKIN, json=signed_body(dev))
    assert r.status_code == 500
    assert "secret-db-host" not in r.text
    monkeypatch.undo()
    # And it recovers (on a new connection: the framework closes one after a 500).
    verify = tls_context(d.ctx.settings.tls.ca_cert)
    with httpx.Client(base_url=d.url, verify=verify) as again:
        r = again.post(CHECKIN, json=signed_body(dev), headers=dict(client.headers))
    assert r.status_code == 200


def test_a_certificate_that_expires_on_a_live_connection_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    authority = DeviceAuthority.init(tmp_path / "ca", tmp_path / "offline" / "root.key")
    key = load_or_create_key(tmp_path / "dev.key")
    cert = authority.sign(make_csr(key, "dev-9"), device_id="dev-9", hardware="rpi4")
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    ctx: Any = SimpleNamespace(device_ca=authority, settings=ServerSettings(data_dir=tmp_path))
    scope = {
        "type": "http",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "extensions": {TLS_EXTENSION: {"client_cert_chain": [pem]}},
    }
    who = device_identity.certificate_device(ctx, scope)
    assert who is not None
    assert who.device_id == "dev-9"
    later = cert.not_valid_after_utc + dt.timedelta(seconds=1)
    monkeypatch.setattr(ca, "now", lambda: later)
    with pytest.raises(AuthError, match="expired"):
        device_identity.certificate_device(ctx, scope)


def test_an_unauthenticated_malformed_check_in_is_refused_as_unauthenticated(world: Any) -> None:
    """Identity first: a client without credentials learns nothing about the body's schema.
    (A body that is not JSON at all the framework route rejects before anything else.)"""
    _d, _dev, client = world
    r = client.post(
        CHECKIN,
        content=b'{"manifest": {"payload": 1}}',
        headers={"Content-Type": "application/json", "Authorization": ""},
    )
    assert r.status_code == 401
    assert r.json()["error"] == "auth"
