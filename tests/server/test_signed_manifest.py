"""Check-ins carry a version manifest signed by the device (DSSE, device key registered at
provisioning): the server verifies it before recording anything and refuses, counts and records
nothing for a missing, bad, foreign or stale one."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from securesystemslib.signer import CryptoSigner

from otaguard.crypto.device_key import load_device_key, public_key_dict
from otaguard.demo import HARDWARE, Demo
from otaguard.director.manifest import (
    PAYLOAD_TYPE,
    VersionManifest,
    sign_manifest,
    verify_manifest,
)
from otaguard.errors import ManifestError
from otaguard.net.tls import tls_context
from otaguard.sim.device import SimulatedDevice


@pytest.fixture(params=[True, False], ids=["lean", "framework"])
def world(
    demo_world: Demo, request: pytest.FixtureRequest
) -> Iterator[tuple[Demo, SimulatedDevice, httpx.Client]]:
    """Every case runs against both check-in paths (server/checkin.py's lean layer and the
    FastAPI route): the same answers either way."""
    d = demo_world
    assert d.ctx is not None
    d.ctx.settings.lean_checkin = request.param
    _, v1 = d.release("1.0.0")
    d.devices = 2
    d.provision_fleet(v1)
    dev = d.fleet[0]
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    client = httpx.Client(
        base_url=d.url,
        verify=tls_context(d.ctx.settings.tls.ca_cert),
        headers={
            "Authorization": f"Bearer {dev.config.credential_file.read_text().strip()}",
            "X-OTAGuard-Device": dev.config.device_id,
        },
    )
    try:
        yield d, dev, client
    finally:
        client.close()


def manifest(device_id: str, **changes: Any) -> VersionManifest:
    fields: dict[str, Any] = {
        "device_id": device_id,
        "hardware": HARDWARE,
        "version": "9.9.9",
        "slot": "b",
        "security_version": 7,
        "agent_version": "test",
    }
    now = changes.pop("now", None)
    fields.update(changes)
    return VersionManifest.create(**fields, now=now)


def failures(d: Demo) -> float:
    assert d.server is not None
    app = d.server.server.config.loaded_app
    while not hasattr(app, "state"):
        app = app.app
    value = app.state.metrics.registry.get_sample_value("otaguard_manifest_failures_total")
    return float(value or 0.0)


def test_signed_manifest_is_verified_and_recorded(world: Any) -> None:
    d, dev, client = world
    key = load_device_key(dev.config.manifest_key_path)
    r = client.post(
        "/device/v1/checkin", json={"manifest": sign_manifest(manifest(dev.config.device_id), key)}
    )
    assert r.status_code == 200, r.text
    view = d.api.device(dev.config.device_id)
    assert (view["current_version"], view["active_slot"], view["security_version"]) == (
        "9.9.9",
        "b",
        7,
    )
    assert view["agent_version"] == "test"
    assert failures(d) == 0


def _tamper(env: dict[str, Any]) -> dict[str, Any]:
    payload = json.loads(base64.b64decode(env["payload"]))
    payload["version"] = "6.6.6"
    return {**env, "payload": base64.b64encode(json.dumps(payload).encode()).decode()}


BAD: dict[str, Any] = {
    "tampered payload": lambda dev, key, other: _tamper(
        sign_manifest(manifest(dev.config.device_id), key)
    ),
    "no signature": lambda dev, key, other: {
        **sign_manifest(manifest(dev.config.device_id), key),
        "signatures": [],
    },
    "signed by another key": lambda dev, key, other: sign_manifest(
        manifest(dev.config.device_id), CryptoSigner.generate_ed25519()
    ),
    "other device's manifest signed by it": lambda dev, key, other: sign_manifest(
        manifest(other.config.device_id), load_device_key(other.config.manifest_key_path)
    ),
    "own key, other device's id": lambda dev, key, other: sign_manifest(
        manifest(other.config.device_id), key
    ),
    "stale clock": lambda dev, key, other: sign_manifest(
        manifest(dev.config.device_id, now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)), key
    ),
    "wrong payload type": lambda dev, key, other: {
        **sign_manifest(manifest(dev.config.device_id), key),
        "payloadType": "application/json",
    },
    "garbage signature": lambda dev, key, other: {
        **sign_manifest(manifest(dev.config.device_id), key),
        "signatures": [{"keyid": key.public_key.keyid, "sig": "!!not base64!!"}],
    },
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_manifest_is_refused_counted_and_changes_nothing(world: Any, case: str) -> None:
    d, dev, client = world
    other = d.fleet[1]
    before = d.api.device(dev.config.device_id)
    key = load_device_key(dev.config.manifest_key_path)
    r = client.post("/device/v1/checkin", json={"manifest": BAD[case](dev, key, other)})
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "manifest"
    assert d.api.device(dev.config.device_id) == before  # last_seen included: nothing recorded
    assert failures(d) == 1


def test_check_in_without_a_manifest_is_a_validation_error(world: Any) -> None:
    d, dev, client = world
    before = d.api.device(dev.config.device_id)
    r = client.post("/device/v1/checkin", json={"hardware": HARDWARE, "version": "1.0.0"})
    assert r.status_code == 422
    assert d.api.device(dev.config.device_id) == before


def test_device_registered_without_a_key_cannot_check_in(world: Any) -> None:
    d, _dev, client = world
    credential = d.api.register_device("keyless", HARDWARE)
    key = CryptoSigner.generate_ed25519()
    r = client.post(
        "/device/v1/checkin",
        json={"manifest": sign_manifest(manifest("keyless"), key)},
        headers={"Authorization": f"Bearer {credential}", "X-OTAGuard-Device": "keyless"},
    )
    assert r.status_code == 401
    assert "no registered manifest key" in r.json()["detail"]
    assert d.api.device("keyless")["last_seen"] is None


def test_registration_refuses_a_malformed_key_and_registers_nothing(world: Any) -> None:
    d, _dev, _client = world
    bad = {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": "zz"}}
    with pytest.raises(Exception, match="HTTP 422"):
        d.api.register_device("badkey", HARDWARE, manifest_key=bad)
    good = public_key_dict(CryptoSigner.generate_ed25519())
    with pytest.raises(Exception, match="HTTP 422"):
        d.api.register_device("badid", HARDWARE, manifest_key={**good, "keyid": "0" * 64})
    for device_id in ("badkey", "badid"):
        with pytest.raises(Exception, match="HTTP 404"):
            d.api.device(device_id)


def test_the_agent_signs_its_check_in(world: Any) -> None:
    d, dev, _client = world
    assert dev.run_once().action == "idle"
    view = d.api.device(dev.config.device_id)
    assert (view["current_version"], view["active_slot"]) == ("1.0.0", "a")
    # Without its key the agent cannot check in (and says why).
    dev.config.manifest_key_path.unlink()
    out = dev.run_once()
    assert out.action == "retry"
    assert "cannot sign the version manifest" in out.detail


def test_verify_manifest_pure_checks() -> None:
    key = CryptoSigner.generate_ed25519()
    key_json = json.dumps(public_key_dict(key))
    m = manifest("dev-1")
    env = sign_manifest(m, key)
    assert verify_manifest(env, key_json, device_id="dev-1") == m
    assert env["payloadType"] == PAYLOAD_TYPE
    with pytest.raises(ManifestError, match="no registered manifest key"):
        verify_manifest(env, None, device_id="dev-1")
    with pytest.raises(ManifestError, match="from the server's clock"):
        verify_manifest(env, key_json, device_id="dev-1", now=m.time + dt.timedelta(hours=1))
    with pytest.raises(ManifestError, match="not a DSSE envelope"):
        verify_manifest({"payload": "x"}, key_json, device_id="dev-1")
    extra = VersionManifest.create(
        device_id="dev-1",
        hardware=HARDWARE,
        version=None,
        slot=None,
        security_version=0,
        agent_version=None,
    )
    raw = json.loads(extra.payload()) | {"unexpected": 1}
    from securesystemslib.dsse import Envelope

    e = Envelope(json.dumps(raw).encode(), PAYLOAD_TYPE, {})
    e.sign(key)
    with pytest.raises(ManifestError, match="unknown fields"):
        verify_manifest(e.to_dict(), key_json, device_id="dev-1")


def _signed_payload(key: CryptoSigner, data: dict[str, Any]) -> dict[str, Any]:
    from securesystemslib.dsse import Envelope

    e = Envelope(json.dumps(data).encode(), PAYLOAD_TYPE, {})
    e.sign(key)
    return e.to_dict()


def test_manifest_image_sha256_is_optional_and_checked() -> None:
    key = CryptoSigner.generate_ed25519()
    key_json = json.dumps(public_key_dict(key))
    image = "ab" * 32
    m = manifest("dev-1", image_sha256=image)
    assert verify_manifest(sign_manifest(m, key), key_json, device_id="dev-1").image_sha256 == image
    # an older agent's manifest has no such field, and a new agent without it signs the same
    old = manifest("dev-1")
    assert "image_sha256" not in json.loads(old.payload())
    assert (
        verify_manifest(sign_manifest(old, key), key_json, device_id="dev-1").image_sha256 is None
    )
    for bad in ("AB" * 32, "ab" * 31, "zz" * 32, 12, ["ab" * 32]):
        raw = json.loads(m.payload()) | {"image_sha256": bad}
        with pytest.raises(ManifestError, match="image_sha256"):
            verify_manifest(_signed_payload(key, raw), key_json, device_id="dev-1")


def test_manifest_sequence_field() -> None:
    """A sequence number round-trips through signing; an older agent's payload has no such
    field (what it signs is unchanged); anything but an integer from 1 to 2**63 - 1 is refused."""
    from securesystemslib.dsse import Envelope

    key = CryptoSigner.generate_ed25519()
    key_json = json.dumps(public_key_dict(key))
    numbered = dataclasses.replace(manifest("dev-1"), sequence=2**63 - 1)
    assert verify_manifest(sign_manifest(numbered, key), key_json, device_id="dev-1") == numbered
    unnumbered = manifest("dev-1")
    assert "sequence" not in json.loads(unnumbered.payload())
    assert (
        verify_manifest(sign_manifest(unnumbered, key), key_json, device_id="dev-1") == unnumbered
    )
    for bad in (0, -1, 2**63, True, "5", 1.5, [1]):
        raw = json.loads(unnumbered.payload()) | {"sequence": bad}
        e = Envelope(json.dumps(raw).encode(), PAYLOAD_TYPE, {})
        e.sign(key)
        with pytest.raises(ManifestError, match="sequence must be an integer"):
            verify_manifest(e.to_dict(), key_json, device_id="dev-1")
