"""Anomaly scan wired to the store (alerts stored once, counted, pushed), per-phase gauges, and
signed webhooks delivered to a receiver on 127.0.0.1 with retries."""

from __future__ import annotations

import datetime as dt
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otaguard.fleet.status import UpdateEvent
from otaguard.server.context import ServerContext, ServerSettings
from otaguard.server.metrics import ServerMetrics
from otaguard.server.monitor import export_rollouts, scan_once
from otaguard.server.webhooks import SIGNATURE_HEADER, WebhookNotifier, sign, verify
from otaguard.store.checkin import CheckinRequest, Reported

HW = "sim-board"


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServerContext]:
    context = ServerContext.open(ServerSettings(data_dir=tmp_path / "server", port=0))
    context.store.upsert_release(
        "sim-board/fw-1.0.0.img",
        version="1.0.0",
        hardware=[HW],
        security_version=1,
        sha256="0" * 64,
        length=1,
        custom={},
    )
    for i in range(30):
        context.store.register_device(f"d{i:02d}", HW, f"credential-{i:02d}-0123456789")
    try:
        yield context
    finally:
        context.close()


def check_in(ctx: ServerContext, device: str, version: str, security: int = 1) -> None:
    report = Reported(HW, version, "a", security, "sim")
    (outcome,) = ctx.store.check_in_many([CheckinRequest(device, lambda _k: report)])
    assert outcome.error is None


def scan(ctx: ServerContext, metrics: ServerMetrics) -> list[str]:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return sorted(a.kind for a in scan_once(ctx, metrics, None, since))


def value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_clean_fleet_raises_nothing_and_each_anomaly_its_alert(ctx: ServerContext) -> None:
    metrics = ServerMetrics()
    for i in range(30):
        check_in(ctx, f"d{i:02d}", "1.0.0")
    ctx.store.record_event(
        "d03",
        event=UpdateEvent.FAILED,
        deployment_id=None,
        version="1.0.0",
        slot="a",
        detail={"error": "disk full", "code": "install"},
    )
    assert scan(ctx, metrics) == []  # clean: an ordinary failure is not an anomaly
    check_in(ctx, "d01", "1.0.0", security=0)  # below its recorded security version
    check_in(ctx, "d02", "6.6.6")  # never published
    for device in ("d04", "d05", "d06"):
        ctx.store.record_event(
            device,
            event=UpdateEvent.REFUSED,
            deployment_id=None,
            version="1.0.0",
            slot="a",
            detail={"error": "bad signature on targets", "code": "verification"},
        )
    kinds = scan(ctx, metrics)
    assert "downgrade_attempt" in kinds
    assert "unknown_firmware" in kinds
    assert kinds.count("verification_failure") == 4  # three devices and the fleet alert
    assert value(metrics, "otaguard_alerts_total", kind="verification_failure") == 4
    assert scan(ctx, metrics) == []  # the same problems again: stored once, not new
    _items, total = ctx.store.monitoring.alerts()
    assert total == len(kinds)


def test_rollout_gauges_per_phase(ctx: ServerContext) -> None:
    from otaguard.fleet.plan_codec import plan_from_json

    metrics = ServerMetrics()
    plan = plan_from_json(
        {"phases": [{"name": "a", "share": 0.5, "soak_seconds": 0}, {"name": "b", "share": 1.0}]}
    )
    dep = ctx.store.create_deployment(
        name="x",
        target_name="sim-board/fw-1.0.0.img",
        selector={"all": True},
        created_by="t",
        plan=plan,
    )
    export_rollouts(ctx, metrics)
    assert (
        value(
            metrics, "otaguard_rollout_targets", deployment=str(dep.id), phase="a", status="pending"
        )
        == 15
    )


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[bytes, str]] = []
    fail_first = 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_first > 0:
            _Receiver.fail_first -= 1
            self.send_response(503)
        else:
            _Receiver.received.append((body, self.headers[SIGNATURE_HEADER]))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_webhooks_are_signed_and_retried(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    outcomes: list[str] = []
    secret = b"webhook-secret-for-tests"
    notifier = WebhookNotifier(
        [f"http://127.0.0.1:{server.server_address[1]}/hook"],
        secret,
        backoff=0.05,
        on_result=outcomes.append,
    ).start()
    try:
        notifier.publish({"alert": {"kind": "downgrade_attempt", "subject": "device:d1"}})
        deadline = time.monotonic() + 10
        while not outcomes and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        notifier.close()
        server.shutdown()
    assert outcomes == ["delivered"]  # after one 503
    ((body, header),) = _Receiver.received
    assert b"downgrade_attempt" in body
    assert verify(secret, body, header, now=time.time())
    assert not verify(b"another secret", body, header, now=time.time())  # control
    assert not verify(secret, body + b" ", header, now=time.time())
    stale = sign(secret, body, int(time.time()) - 3600)
    assert not verify(secret, body, stale, now=time.time())


def test_a_failure_spike_on_one_hardware_type_is_raised(ctx: ServerContext) -> None:
    metrics = ServerMetrics()
    ctx.store.upsert_release(
        "any/fw-1.1.0.img",
        version="1.1.0",
        hardware=[HW, "b2"],
        security_version=1,
        sha256="1" * 64,
        length=1,
        custom={},
    )
    for i in range(40):
        ctx.store.register_device(f"b2-{i:02d}", "b2", f"credential-b2-{i:02d}-0123456789")
    devices = [f"d{i:02d}" for i in range(30)] + [f"b2-{i:02d}" for i in range(40)]
    dep = ctx.store.create_deployment(
        name="x", target_name="any/fw-1.1.0.img", selector={"all": True}, created_by="t"
    ).id
    for n, device in enumerate(devices):
        failed = device.startswith("b2") and n % 2 == 0
        ctx.store.record_event(
            device,
            event=UpdateEvent.FAILED if failed else UpdateEvent.COMMITTED,
            deployment_id=dep,
            version="1.1.0",
            slot="b",
            detail={},
        )
    alerts = scan_once(ctx, metrics, None, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert [(a.kind, a.subject) for a in alerts] == [("failure_spike", "hardware:b2")]
