"""The device API over loopback TLS: downloads with Range/ETag/304/416, no anonymous access to
anything device-specific, status events with error details and a bounded log excerpt, and the
server's view after a bootloader fallback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from otaguard.demo import Demo
from otaguard.device.bootloader import BootResult
from otaguard.net.tls import tls_context
from otaguard.sim.device import SimulatedDevice
from otaguard.store.database import MAX_DETAIL_CHARS


def client_for(d: Demo, headers: dict[str, str] | None = None) -> httpx.Client:
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    return httpx.Client(
        base_url=d.url, verify=tls_context(d.ctx.settings.tls.ca_cert), headers=headers or {}
    )


def device_headers(dev: SimulatedDevice) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {dev.config.credential_file.read_text().strip()}",
        "X-OTAGuard-Device": dev.config.device_id,
    }


@pytest.fixture
def world(demo_world: Demo) -> Iterator[tuple[Demo, str, bytes, httpx.Client]]:
    d = demo_world
    name, image = d.release("1.0.0")
    with client_for(d) as anon:
        yield d, name, image, anon


def target_url(d: Demo, name: str) -> str:
    assert d.api is not None
    rel = d.api.http.get(f"/api/v1/releases/{name}").json()
    directory, base = name.rsplit("/", 1)
    return f"/tuf/targets/{directory}/{rel['sha256']}.{base}"


def check_ranges_and_etag(http: httpx.Client, url: str, data: bytes) -> None:
    full = http.get(url)
    assert full.status_code == 200
    assert full.content == data
    etag = full.headers["etag"]
    assert full.headers["accept-ranges"] == "bytes"

    # Repeated polls are cheap: 304, no body, for the ETag alone, in a list, or weak.
    for inm in (etag, f'"other", {etag}', f"W/{etag}", "*"):
        r = http.get(url, headers={"If-None-Match": inm})
        assert r.status_code == 304, inm
        assert r.content == b""
        assert r.headers["etag"] == etag
    assert http.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200

    # Resumes: one range, an open range, a suffix; each with its Content-Range.
    size = len(data)
    r = http.get(url, headers={"Range": "bytes=0-9"})
    assert (r.status_code, r.content) == (206, data[:10])
    assert r.headers["content-range"] == f"bytes 0-9/{size}"
    r = http.get(url, headers={"Range": f"bytes={size - 5}-"})
    assert (r.status_code, r.content) == (206, data[-5:])
    assert r.headers["content-range"] == f"bytes {size - 5}-{size - 1}/{size}"
    r = http.get(url, headers={"Range": "bytes=-7"})
    assert (r.status_code, r.content) == (206, data[-7:])
    r = http.get(url, headers={"Range": f"bytes=5-{size + 100}"})
    assert (r.status_code, r.content) == (206, data[5:])
    # Nothing satisfiable: 416 with the size.
    r = http.get(url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    # A malformed Range is ignored (RFC 9110): the whole representation.
    r = http.get(url, headers={"Range": "lines=1-2"})
    assert (r.status_code, r.content) == (200, data)


def test_metadata_downloads_support_range_etag_and_304(world: Any) -> None:
    d, _name, _image, anon = world
    assert d.ctx is not None
    for name in ("timestamp.json", "1.root.json", "root.json"):
        data = d.ctx.repo.store.get(name)
        assert data is not None, name
        check_ranges_and_etag(anon, f"/tuf/metadata/{name}", data)
    assert anon.get("/tuf/metadata/404.targets.json").status_code == 404
    assert anon.get("/tuf/metadata/..%2Fserver.db").status_code == 404


def test_artifact_downloads_support_range_etag_and_304(world: Any) -> None:
    d, name, image, anon = world
    url = target_url(d, name)
    check_ranges_and_etag(anon, url, image)
    r = anon.get(url)
    assert "immutable" in r.headers["cache-control"]
    missing = url.replace(url.rsplit("/", 1)[1][:64], "0" * 64)
    assert anon.get(missing).status_code == 404


DEVICE_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    (
        "POST",
        "/device/v1/checkin",
        {"manifest": {"payload": "e30=", "payloadType": "x", "signatures": []}},
    ),
    ("POST", "/device/v1/events", {"event": "downloading"}),
    ("GET", "/device/v1/deployments/1/state", None),
]
MANAGEMENT_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/devices", None),
    ("GET", "/api/v1/devices/sim-0001", None),
    ("PUT", "/api/v1/devices/sim-0001/tags", {"tags": ["x"]}),
    ("POST", "/api/v1/devices", {"id": "intruder", "hardware": "sim-board"}),
    ("GET", "/api/v1/releases", None),
    ("GET", "/api/v1/deployments", None),
    ("GET", "/api/v1/deployments/1", None),
    ("GET", "/api/v1/deployments/1/devices", None),
    ("POST", "/api/v1/deployments/1/cancel", None),
    ("GET", "/api/v1/repository/online-keys", None),
    ("GET", "/api/v1/tags", None),
]


def test_nothing_device_specific_is_served_anonymously(world: Any) -> None:
    d, _name, image, anon = world
    d.devices = 2
    d.provision_fleet(image)
    a, b = d.fleet
    assert d.api is not None
    before = d.api.device(a.config.device_id)
    forged = [
        {},  # anonymous
        {"X-OTAGuard-Device": a.config.device_id},  # id alone
        {
            "Authorization": f"Bearer {a.config.credential_file.read_text().strip()}"
        },  # credential alone
        {"X-OTAGuard-Device": a.config.device_id, "Authorization": "Bearer wrong"},
        # b's valid credential presented as a
        {
            "X-OTAGuard-Device": a.config.device_id,
            "Authorization": f"Bearer {b.config.credential_file.read_text().strip()}",
        },
        {
            "X-OTAGuard-Device": "unknown",
            "Authorization": f"Bearer {a.config.credential_file.read_text().strip()}",
        },
        # the operator token is not a device credential
        {"X-OTAGuard-Device": a.config.device_id, "Authorization": f"Bearer {d.ctx.admin_token}"},
    ]
    for headers in forged:
        for method, url, body in DEVICE_CALLS:
            r = anon.request(method, url, json=body, headers=headers)
            assert r.status_code == 401, (headers, url, r.text)
            assert r.json()["error"] == "auth"
    # Device credentials do not open the management API, and neither does nothing.
    for headers in ({}, device_headers(a), {"Authorization": "Bearer nope"}):
        for method, url, body in MANAGEMENT_CALLS:
            r = anon.request(method, url, json=body, headers=headers)
            assert r.status_code == 401, (headers, url, r.text)
    assert d.api.device(a.config.device_id) == before
    with pytest.raises(Exception, match="HTTP 404"):
        d.api.device("intruder")


def test_device_asks_only_about_its_own_deployments(world: Any) -> None:
    d, _name, image, anon = world
    v2_name, _ = d.release("2.0.0")
    d.devices = 2
    d.provision_fleet(image)
    a, b = d.fleet
    assert d.api is not None
    dep = d.api.create_deployment("only-a", v2_name, {"devices": [a.config.device_id]})
    url = f"/device/v1/deployments/{dep['id']}/state"
    r = anon.get(url, headers=device_headers(a))
    assert r.status_code == 200
    assert r.json() == {"state": "active", "status": "pending"}
    r = anon.get(url, headers=device_headers(b))
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_status_events_keep_error_details_and_a_bounded_log_excerpt(world: Any) -> None:
    d, _name, image, anon = world
    v2_name, _ = d.release("2.0.0")
    d.devices = 1
    d.provision_fleet(image)
    (dev,) = d.fleet
    assert d.api is not None
    dep_id = d.deploy(v2_name)
    log = "boot log line\n" * 1000 + "LAST LINE"
    report = {
        "event": "failed",
        "report_id": "r-1",
        "deployment_id": dep_id,
        "version": "1.0.0",
        "slot": "a",
        "detail": {"error": "write to slot b failed: EIO", "code": "install", "log": log},
    }
    r = anon.post("/device/v1/events", json=report, headers=device_headers(dev))
    assert r.status_code == 201, r.text
    stored = r.json()["detail"]
    assert stored["error"] == "write to slot b failed: EIO"
    assert stored["code"] == "install"
    assert len(stored["log"]) == MAX_DETAIL_CHARS
    assert stored["log"].endswith("LAST LINE")  # the end of a log is what explains a failure
    assert log.endswith(stored["log"])
    detail = d.api.device(dev.config.device_id)
    assert detail["events"][-1]["detail"] == stored
    assert detail["update_state"] == "failed"
    (target,) = d.api.deployment_devices(dep_id)
    assert (target["status"], target["detail"]) == ("failed", "write to slot b failed: EIO")
    # The same report again (the device got no answer) is stored once.
    again = anon.post("/device/v1/events", json=report, headers=device_headers(dev))
    assert again.json()["id"] == r.json()["id"]
    assert len(d.api.device(dev.config.device_id)["events"]) == 1
    # Too many detail entries or an unknown event: refused, nothing stored.
    for bad in (
        {**report, "report_id": "r-2", "detail": {f"k{i}": i for i in range(33)}},
        {**report, "report_id": "r-3", "event": "exploded"},
        {**report, "report_id": "r-4", "detail": {"nested": {"a": 1}}},
    ):
        r = anon.post("/device/v1/events", json=bad, headers=device_headers(dev))
        assert r.status_code == 422, r.text
    assert len(d.api.device(dev.config.device_id)["events"]) == 1


class BootHang(BaseException):
    """The new image hangs before confirming; the watchdog resets the board."""


def test_after_a_bootloader_fallback_the_server_shows_rolled_back_and_failed(world: Any) -> None:
    d, _name, image, _anon = world
    v2_name, _ = d.release("2.0.0", security_version=1)
    d.devices = 1

    def health(boot: BootResult) -> tuple[bool, str]:
        if boot.slot == "b":
            raise BootHang
        return True, "ok"

    d.provision_fleet(image, health_check=health)
    (dev,) = d.fleet
    assert d.api is not None
    dep_id = d.deploy(v2_name)
    assert dev.run_once().reboot
    for _ in range(10):
        try:
            dev.reboot()
            break
        except BootHang:
            continue
    # The server was never told "committed": it must not show success.
    detail = d.api.device(dev.config.device_id)
    assert detail["update_state"] == "rolled_back"
    assert (detail["current_version"], detail["active_slot"]) == ("1.0.0", "a")
    last = detail["events"][-1]
    assert last["event"] == "rolled_back"
    assert last["deployment_id"] == dep_id
    assert (last["version"], last["slot"]) == ("1.0.0", "a")
    (target,) = d.api.deployment_devices(dep_id)
    assert target["status"] == "failed"
    assert target["last_event"] == "rolled_back"
    assert target["detail"] == "bootcount 4 exceeded bootlimit 3"
    dep = d.api.deployment(dep_id)
    assert (dep["state"], dep["counts"], dep["total"]) == ("completed", {"failed": 1}, 1)
    # And the next signed check-in still reports v1 in slot a.
    assert dev.run_once().action == "idle"
    detail = d.api.device(dev.config.device_id)
    assert (detail["current_version"], detail["active_slot"]) == ("1.0.0", "a")
