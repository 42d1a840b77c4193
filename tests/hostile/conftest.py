"""A running demo server with one provisioned device, on both check-in paths (the lean
layer and the FastAPI route), for the hostile-input tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kit.checkin import CheckinWorld, checkin_world
from otaguard.crypto.device_key import load_device_key
from otaguard.demo import HARDWARE, Demo
from otaguard.director.manifest import VersionManifest, sign_manifest
from otaguard.net.tls import tls_context
from otaguard.sim.device import SimulatedDevice

CHECKIN = "/device/v1/checkin"
EVENTS = "/device/v1/events"

World = CheckinWorld


@pytest.fixture(params=[True, False], ids=["lean", "framework"])
def world(demo_world: Demo, request: pytest.FixtureRequest) -> Iterator[World]:
    with checkin_world(demo_world, lean=request.param) as w:
        yield w


def signed_body(dev: SimulatedDevice, version: str = "1.0.0", **create: Any) -> dict[str, Any]:
    m = VersionManifest.create(
        device_id=dev.config.device_id,
        hardware=HARDWARE,
        version=version,
        slot=create.pop("slot", "a"),
        security_version=0,
        agent_version="test",
        **create,
    )
    return {"manifest": sign_manifest(m, load_device_key(dev.config.manifest_key_path))}


@pytest.fixture(scope="module", params=[True, False], ids=["lean", "framework"])
def shared_world(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[World]:
    """One server per module and path, for tables of requests that change nothing (each
    refused): starting a server per case would make the suite minutes instead of seconds.
    Failure limits are lifted so the table's refusals do not turn into 429s."""
    d = Demo(
        tmp_path_factory.mktemp("hostile") / "data",
        devices=1,
        port=0,
        payload_size=64 * 1024,
        workers=4,
    )
    d.start_server()
    try:
        d.setup_repository()
        assert d.ctx is not None
        assert d.ctx.settings.tls is not None
        d.ctx.settings.lean_checkin = request.param
        d.ctx.device_refusals.failures.limit = 10**9
        _, v1 = d.release("1.0.0")
        d.provision_fleet(v1)
        dev = d.fleet[0]
        with httpx.Client(
            base_url=d.url,
            verify=tls_context(d.ctx.settings.tls.ca_cert),
            headers={
                "Authorization": f"Bearer {dev.config.credential_file.read_text().strip()}",
                "X-OTAGuard-Device": dev.config.device_id,
            },
            timeout=30,
        ) as client:
            yield d, dev, client
    finally:
        d.close()
