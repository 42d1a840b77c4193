"""mTLS on the device API over loopback TLS: enrollment with a one-time token, a device acts
only as the device its certificate names, revocation from the next request, renewal, the
trusted-proxy header, and management routes without a client certificate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from securesystemslib.signer import CryptoSigner

from otaguard.crypto.device_key import load_or_create_device_key, public_key_dict
from otaguard.demo import HARDWARE, Demo
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.identity.authority import DeviceAuthority
from otaguard.identity.device_keys import load_or_create_key, make_csr
from otaguard.identity.enroll import enroll, renew
from otaguard.net.client import make_client


@dataclass
class Dev:
    id: str
    cert: Path
    key: Path
    manifest_key: CryptoSigner
    credential: str


def _enroll(world: Demo, tmp: Path, device_id: str) -> Dev:
    assert world.api is not None
    assert world.ctx is not None
    assert world.ctx.settings.tls is not None
    signer = load_or_create_device_key(tmp / device_id / "manifest.key")
    credential = world.api.register_device(
        device_id, HARDWARE, [device_id], manifest_key=public_key_dict(signer)
    )
    token = world.api.enrollment_token(device_id)
    key = load_or_create_key(tmp / device_id / "client.key")
    pem = enroll(
        world.url, world.ctx.settings.tls.ca_cert, device_id, token, make_csr(key, device_id)
    )
    (tmp / device_id / "client.pem").write_text(pem)
    return Dev(
        device_id, tmp / device_id / "client.pem", key_path(tmp, device_id), signer, credential
    )


def key_path(tmp: Path, device_id: str) -> Path:
    return tmp / device_id / "client.key"


@pytest.fixture
def world(demo_world: Demo, tmp_path: Path) -> tuple[Demo, Dev, Dev]:
    return (
        demo_world,
        _enroll(demo_world, tmp_path, "dev-a"),
        _enroll(demo_world, tmp_path, "dev-b"),
    )


def _client(world: Demo, dev: Dev | None, **headers: str) -> httpx.Client:
    assert world.ctx is not None
    assert world.ctx.settings.tls is not None
    client = make_client(
        world.url,
        world.ctx.settings.tls.ca_cert,
        None,
        client_cert=(dev.cert, dev.key) if dev else None,
    )
    client.headers.update(headers)
    return client


def _event(client: httpx.Client, report_id: str) -> httpx.Response:
    body = {"event": "downloading", "version": "1.0.0", "report_id": report_id}
    return client.post("/device/v1/events", json=body)


def _checkin(client: httpx.Client, dev: Dev, sequence: int | None = None) -> httpx.Response:
    manifest = VersionManifest.create(
        device_id=dev.id,
        hardware=HARDWARE,
        version="1.0.0",
        slot="a",
        security_version=0,
        agent_version="test",
        sequence=sequence,
    )
    return client.post(
        "/device/v1/checkin", json={"manifest": sign_manifest(manifest, dev.manifest_key)}
    )


def _reports(world: Demo, device_id: str) -> set[str]:
    assert world.api is not None
    events = world.api.device(device_id).get("events", [])
    return {str(e.get("report_id")) for e in events}


def test_device_reads_and_writes_only_its_own_state(world: tuple[Demo, Dev, Dev]) -> None:
    demo, a, b = world
    assert demo.api is not None
    target, _ = demo.release("2.0.0")
    dep = demo.api.create_deployment("only-b", target, {"devices": ["dev-b"]})
    with _client(demo, a) as ca_, _client(demo, b) as cb:
        # Own state through the certificate alone (no bearer credential, no id header).
        assert _event(ca_, "a-1").status_code == 201
        assert "a-1" in _reports(demo, "dev-a")
        # A cannot claim to be B: header mismatch refused, nothing recorded for B.
        spoof = _client(demo, a, **{"X-OTAGuard-Device": "dev-b"})
        with spoof:
            assert _event(spoof, "a-as-b").status_code == 401
            assert _checkin(spoof, b).status_code == 401
        # Even with B's bearer credential, the certificate decides who is asking.
        with _client(demo, a, Authorization=f"Bearer {b.credential}") as mixed:
            assert _event(mixed, "a-2").status_code == 201
        assert "a-2" in _reports(demo, "dev-a")
        assert not {"a-as-b", "a-2"} & _reports(demo, "dev-b")
        # B's assignment and deployment state: B gets them, A does not.
        assert _checkin(cb, b).json()["action"] == "update"
        ra = _checkin(ca_, a)
        assert ra.status_code == 200
        assert ra.json()["action"] == "none"
        assert _checkin(ca_, b).status_code == 401  # B's signed manifest from A: refused
        state = f"/device/v1/deployments/{dep['id']}/state"
        assert cb.get(state).status_code == 200
        assert ca_.get(state).status_code == 404


def test_enrollment_resets_the_manifest_count(world: tuple[Demo, Dev, Dev], tmp_path: Path) -> None:
    """A factory-reset device counts its manifests from 1 again: refused as replaying (the
    control) until an operator's one-time token enrolls it again, which resets the count."""
    demo, a, _b = world
    assert demo.api is not None
    assert demo.ctx is not None
    assert demo.ctx.settings.tls is not None
    with _client(demo, a) as client:
        assert _checkin(client, a, sequence=500).status_code == 200
        refused = _checkin(client, a, sequence=1)
        assert (refused.status_code, refused.json()["error"]) == (401, "manifest")
    token = demo.api.enrollment_token(a.id)
    key = load_or_create_key(tmp_path / "reset" / "client.key")
    pem = enroll(demo.url, demo.ctx.settings.tls.ca_cert, a.id, token, make_csr(key, a.id))
    (tmp_path / "reset" / "client.pem").write_text(pem)
    again = Dev(
        a.id, tmp_path / "reset" / "client.pem", key_path(tmp_path, "reset"), a.manifest_key, ""
    )
    with _client(demo, again) as client:
        assert _checkin(client, again, sequence=1).status_code == 200
        assert _checkin(client, again, sequence=1).status_code == 401  # counting again
    resets = [
        e.detail.get("manifest_order_reset")
        for e in demo.ctx.identity.audit_entries()
        if e.action == "device.enroll" and e.target == a.id
    ]
    assert resets == [False, True]


def test_revocation_refuses_next_request_on_same_connection(
    world: tuple[Demo, Dev, Dev],
) -> None:
    demo, a, b = world
    assert demo.api is not None
    with _client(demo, a) as ca_, _client(demo, b) as cb:
        assert _event(ca_, "before").status_code == 201
        r = demo.api._call("POST", "/api/v1/devices/dev-a/revoke-certificates")
        assert len(r["revoked"]) == 1
        refused = _event(ca_, "after")  # kept-alive connection, handshake already done
        assert refused.status_code == 401
        assert "revoked" in refused.json()["detail"]
        assert _event(cb, "b-fine").status_code == 201
    assert "after" not in _reports(demo, "dev-a")


def test_renewal_and_enrollment_token_rules(world: tuple[Demo, Dev, Dev], tmp_path: Path) -> None:
    demo, a, _b = world
    assert demo.api is not None
    assert demo.ctx is not None
    assert demo.ctx.settings.tls is not None
    server_ca = demo.ctx.settings.tls.ca_cert
    new_key = load_or_create_key(tmp_path / "renewed.key", "ed25519")
    with _client(demo, a) as ca_:
        pem = renew(ca_, make_csr(new_key, "whatever"))
    (tmp_path / "renewed.pem").write_text(pem)
    renewed = Dev("dev-a", tmp_path / "renewed.pem", tmp_path / "renewed.key", a.manifest_key, "")
    with _client(demo, renewed) as rc:
        assert _event(rc, "renewed").status_code == 201
    with _client(demo, None) as anon:  # renewal needs a certificate
        assert (
            anon.post("/device/v1/renew", json={"csr": make_csr(new_key, "x")}).status_code == 401
        )
    # Tokens: single use, bound to the device.
    token = demo.api.enrollment_token("dev-b")
    csr = make_csr(new_key, "dev-a")
    with pytest.raises(httpx.HTTPStatusError) as other:
        enroll(demo.url, server_ca, "dev-a", token, csr)
    assert other.value.response.status_code == 401
    enroll(demo.url, server_ca, "dev-b", token, csr)
    with pytest.raises(httpx.HTTPStatusError) as reused:
        enroll(demo.url, server_ca, "dev-b", token, csr)
    assert reused.value.response.status_code == 401


def test_foreign_certificate_fails_handshake_and_bearer_fallback_switch(
    world: tuple[Demo, Dev, Dev], tmp_path: Path
) -> None:
    demo, a, _b = world
    assert demo.ctx is not None
    other = DeviceAuthority.init(tmp_path / "rogue", tmp_path / "rogue.key")
    key = load_or_create_key(tmp_path / "rogue-dev.key")
    cert = other.sign(make_csr(key, "dev-a"), device_id="dev-a", hardware=HARDWARE)
    from cryptography.hazmat.primitives import serialization

    (tmp_path / "rogue.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    rogue = Dev("dev-a", tmp_path / "rogue.pem", tmp_path / "rogue-dev.key", a.manifest_key, "")
    with _client(demo, rogue) as rc, pytest.raises(httpx.HTTPError):
        _event(rc, "rogue")
    # Bearer credentials work as a fallback only while it is enabled.
    bearer = {"X-OTAGuard-Device": "dev-a", "Authorization": f"Bearer {a.credential}"}
    with _client(demo, None, **bearer) as bc:
        assert _event(bc, "bearer-1").status_code == 201
        demo.ctx.settings.device_bearer_fallback = False
        assert _event(bc, "bearer-2").status_code == 401
    # The management API needs no client certificate.
    assert demo.api is not None
    assert demo.api.device("dev-a")["id"] == "dev-a"


def test_certificate_from_trusted_proxy_header_only(world: tuple[Demo, Dev, Dev]) -> None:
    demo, a, _b = world
    assert demo.ctx is not None
    settings = demo.ctx.settings
    settings.device_bearer_fallback = False
    settings.client_cert_header = "X-Client-Cert"
    header = {"X-Client-Cert": quote(a.cert.read_text())}
    with _client(demo, None, **header) as proxied:
        settings.client_cert_proxies = ["10.9.9.9"]  # we are not the proxy: ignored
        assert _event(proxied, "p-1").status_code == 401
        settings.client_cert_proxies = ["127.0.0.1"]
        assert _event(proxied, "p-2").status_code == 201
        proxied.headers["X-Client-Cert"] = quote("-----BEGIN CERTIFICATE-----\nAAAA\n")
        assert _event(proxied, "p-3").status_code == 401
    assert "p-2" in _reports(demo, "dev-a")


def test_device_enroll_cli(world: tuple[Demo, Dev, Dev], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from otaguard.cli.main import app

    demo, _a, _b = world
    assert demo.api is not None
    assert demo.ctx is not None
    assert demo.ctx.settings.tls is not None
    token = demo.api.enrollment_token("dev-b")
    args = ["device", "enroll", "--server", demo.url]
    args += ["--server-ca", str(demo.ctx.settings.tls.ca_cert), "--device", "dev-b"]
    args += ["--key", str(tmp_path / "cli.key"), "--cert-out", str(tmp_path / "cli.pem")]
    on_line = CliRunner().invoke(app, [*args, "--token", token])  # a secret in argv: refused
    assert on_line.exit_code != 0
    assert "visible to other users" in on_line.output
    assert not (tmp_path / "cli.pem").exists()
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    r = CliRunner().invoke(app, [*args, "--token-file", str(token_file), "--key-type", "ed25519"])
    assert r.exit_code == 0, r.output
    dev = Dev("dev-b", tmp_path / "cli.pem", tmp_path / "cli.key", _b.manifest_key, "")
    with _client(demo, dev) as c:
        assert _event(c, "cli").status_code == 201
    again = CliRunner().invoke(app, [*args, "--token-file", "-"], input=token)
    assert again.exit_code == 2
    assert "refused" in again.output
