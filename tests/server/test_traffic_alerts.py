"""The traffic alerts wired to a real server (TLS on loopback): failed authentications from
every refusal site feed the per-address burst alert, downloads from /tuf/targets are counted
per proven device (a forged claim counts against the address), a refused manifest replay
raises its alert; each is stored once, counted in Prometheus and handed to the webhooks."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from securesystemslib.signer import CryptoSigner

from otaguard.crypto.device_key import public_key_dict
from otaguard.demo import HARDWARE, Demo
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.fleet.anomaly import AnomalyPolicy, VolumePolicy
from otaguard.net.tls import tls_context
from otaguard.server.metrics import ServerMetrics
from otaguard.server.monitor import scan_once
from otaguard.server.webhooks import WebhookNotifier
from otaguard.store.monitoring import AlertView


@pytest.fixture
def demo_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Demo]:
    """The shared demo world, but the server's own monitoring task does nothing: each test
    runs the scan itself (``scan_once``) and must see what it raises first."""

    async def idle(*_args: object) -> None:
        return None

    monkeypatch.setattr("otaguard.server.app.run_monitor", idle)
    d = Demo(tmp_path / "data", devices=4, port=0, payload_size=64 * 1024, workers=4)
    d.start_server()
    d.setup_repository()
    try:
        yield d
    finally:
        d.close()


class Recorder(WebhookNotifier):
    """The webhook queue, recorded instead of delivered (delivery: test_rollout_monitoring)."""

    def __init__(self) -> None:
        super().__init__(["https://127.0.0.1:9/unused"], b"secret")
        self.published: list[dict[str, Any]] = []

    def publish(self, payload: dict[str, Any]) -> None:
        self.published.append(payload)


def scan(d: Demo, metrics: ServerMetrics, notifier: Recorder | None = None) -> list[AlertView]:
    assert d.ctx is not None
    return scan_once(d.ctx, metrics, notifier, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))


def client(d: Demo) -> httpx.Client:
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    return httpx.Client(base_url=d.url, verify=tls_context(d.ctx.settings.tls.ca_cert))


def enroll(d: Demo, device_id: str) -> tuple[str, CryptoSigner]:
    assert d.api is not None
    signer = CryptoSigner.generate_ed25519()
    body = {"id": device_id, "hardware": HARDWARE, "manifest_key": public_key_dict(signer)}
    r = d.api.http.post("/api/v1/devices", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["credential"]), signer


def signed(device_id: str, signer: CryptoSigner) -> dict[str, Any]:
    manifest = VersionManifest.create(
        device_id=device_id,
        hardware=HARDWARE,
        version="1.0.0",
        slot="a",
        security_version=0,
        agent_version="test",
    )
    return {"manifest": sign_manifest(manifest, signer)}


def headers(device_id: str, credential: str) -> dict[str, str]:
    return {"X-OTAGuard-Device": device_id, "Authorization": f"Bearer {credential}"}


def test_failed_authentications_from_every_site_raise_one_burst(demo_world: Demo) -> None:
    d = demo_world
    assert d.ctx is not None
    metrics = ServerMetrics()
    d.release("1.0.0")  # what the devices report running
    credential, signer = enroll(d, "dev-1")
    with client(d) as c:
        good = c.post(
            "/device/v1/checkin", json=signed("dev-1", signer), headers=headers("dev-1", credential)
        )
        assert good.status_code == 200
        assert scan(d, metrics) == []  # the control: honest traffic raises nothing
        for i in range(4):
            wrong = headers("dev-1", f"wrong-{i}")
            r = c.post("/device/v1/checkin", json=signed("dev-1", signer), headers=wrong)
            assert r.status_code == 401
            r = c.get("/api/v1/devices", headers={"Authorization": f"Bearer nope-{i}"})
            assert r.status_code == 401
            r = c.post("/api/v1/auth/login", json={"username": "admin2", "password": "x" * 12})
            assert r.status_code == 401
            r = c.post("/device/v1/events", json={}, headers=wrong)
            assert r.status_code == 401
    assert scan(d, metrics) == []  # 16 failures: under the default threshold of 20
    d.ctx.settings.anomaly = AnomalyPolicy(auth_threshold=16)
    notifier = Recorder()
    (alert,) = scan(d, metrics, notifier)
    assert (alert.kind, alert.subject, alert.severity) == (
        "auth_failure_burst",
        "source:127.0.0.1",
        "warning",
    )
    e = alert.evidence
    assert e["failures"] == 16
    assert e["threshold"] == 16
    assert e["distinct_routes"] == 4
    for route in (
        "POST /device/v1/checkin (4)",
        "GET /api/v1/devices (4)",
        "POST /api/v1/auth/login (4)",
        "POST /device/v1/events (4)",
    ):
        assert route in str(e["routes"])
    assert (
        metrics.registry.get_sample_value("otaguard_alerts_total", {"kind": "auth_failure_burst"})
        == 1
    )
    assert [p["alert"]["subject"] for p in notifier.published] == ["source:127.0.0.1"]
    dropped = metrics.registry.get_sample_value
    assert dropped("otaguard_tally_dropped", {"tally": "auth_failures"}) == 0  # saw everything
    assert scan(d, metrics) == []  # raised once; seen again, it is updated, not new
    listed = d.api.http.get("/api/v1/alerts").json()["items"] if d.api else []
    assert [a["kind"] for a in listed] == ["auth_failure_burst"]
    ack = d.api.http.post(f"/api/v1/alerts/{listed[0]['id']}/acknowledge") if d.api else None
    assert ack is not None
    assert ack.status_code == 200


def test_downloads_count_per_proven_device_and_a_loop_raises_volume(demo_world: Demo) -> None:
    d = demo_world
    assert d.ctx is not None
    name, image = d.release("1.0.0")
    target = d.ctx.repo.find_target(name)
    assert target is not None
    url = f"/tuf/targets/{target.get_prefixed_paths()[0]}"
    honest = [enroll(d, f"dev-{i}")[0] for i in range(5)]
    looping, _ = enroll(d, "dev-loop")
    with client(d) as c:
        for i, credential in enumerate(honest):  # once each; one resumes after a cut
            if i == 0:
                half = len(image) // 2
                r = c.get(
                    url, headers={**headers("dev-0", credential), "Range": f"bytes=0-{half - 1}"}
                )
                assert r.status_code == 206
                r = c.get(url, headers={**headers("dev-0", credential), "Range": f"bytes={half}-"})
                assert r.status_code == 206
            else:
                assert c.get(url, headers=headers(f"dev-{i}", credential)).status_code == 200
        etag = c.get(url, headers=headers("dev-1", honest[1])).headers["etag"]
        not_modified = c.get(url, headers={**headers("dev-1", honest[1]), "If-None-Match": etag})
        assert not_modified.status_code == 304  # no bytes: not counted
        for _ in range(8):
            assert c.get(url, headers=headers("dev-loop", looping)).status_code == 200
        for _ in range(8):  # someone claiming dev-2 without its credential
            assert c.get(url, headers=headers("dev-2", "forged")).status_code == 200
    metrics = ServerMetrics()
    d.ctx.settings.anomaly = AnomalyPolicy(volume=VolumePolicy(floor_bytes=1))
    alerts = {a.subject: a for a in scan(d, metrics)}
    assert set(alerts) == {"device:dev-loop", "source:127.0.0.1"}
    e = alerts["device:dev-loop"].evidence
    assert e["bytes_downloaded"] == 8 * len(image)
    assert e["requests"] == 8
    assert e["targets"] == 1
    assert e["fleet_median_bytes"] == len(image)  # dev-0's two halves are one image
    assert e["expected_bytes"] == 0  # no deployment assigned it anything
    forged = alerts["source:127.0.0.1"]
    assert forged.evidence["bytes_downloaded"] == 8 * len(image)
    assert "unauthenticated client 127.0.0.1" in forged.message
    assert (
        metrics.registry.get_sample_value("otaguard_alerts_total", {"kind": "download_volume"}) == 2
    )


def test_a_refused_replay_raises_its_alert_with_times_and_nonces(demo_world: Demo) -> None:
    d = demo_world
    d.release("1.0.0")
    credential, signer = enroll(d, "dev-r")
    metrics = ServerMetrics()
    with client(d) as c:
        first = signed("dev-r", signer)
        assert (
            c.post(
                "/device/v1/checkin", json=first, headers=headers("dev-r", credential)
            ).status_code
            == 200
        )
        assert scan(d, metrics) == []  # the control: an accepted manifest is no replay
        replayed = c.post("/device/v1/checkin", json=first, headers=headers("dev-r", credential))
        assert replayed.status_code == 401
    notifier = Recorder()
    (alert,) = scan(d, metrics, notifier)
    assert (alert.kind, alert.subject, alert.severity) == (
        "replay_attempt",
        "device:dev-r",
        "critical",
    )
    e = alert.evidence
    payload = json.loads(base64.b64decode(first["manifest"]["payload"]))
    assert e["refused"] is True
    assert e["nonce_reused"] is True
    assert e["nonce"] == e["newest_nonce"] == payload["nonce"]
    assert e["issued_at"] == e["newest_seen_at"]
    assert e["issued_at"].startswith(payload["timestamp"].removesuffix("Z"))
    assert (
        metrics.registry.get_sample_value("otaguard_alerts_total", {"kind": "replay_attempt"}) == 1
    )
    assert notifier.published[0]["alert"]["kind"] == "replay_attempt"


def test_server_command_refuses_impossible_thresholds_before_starting(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from otaguard.cli.main import app

    data = tmp_path / "server"
    args = ["server", "--data-dir", str(data), "--port", "0"]
    bad = [*args, "--auth-burst-threshold", "0", "--download-volume-factor", "0.5"]
    result = CliRunner().invoke(app, bad)
    assert result.exit_code == 2
    output = " ".join(result.output.split())  # rich wraps long lines
    assert "auth_threshold must be >= 1" in output
    assert "volume.factor must be >= 1" in output
    assert not data.exists()  # nothing was created
    half = [*args, "--webhook-url", "https://127.0.0.1:9/hook"]
    result = CliRunner().invoke(app, half)
    assert result.exit_code == 2
    assert "--webhook-secret-file" in " ".join(result.output.split())
