"""One simulated device on a demo server and an HTTP client that speaks for it with its bearer
credential, on the lean check-in handler or the FastAPI route (``lean``): the world of the
check-in endpoint tests and the hostile-input suite."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from otaguard.demo import Demo
from otaguard.net.tls import tls_context
from otaguard.sim.device import SimulatedDevice

CheckinWorld = tuple[Demo, SimulatedDevice, httpx.Client]


@contextmanager
def checkin_world(d: Demo, *, lean: bool) -> Iterator[CheckinWorld]:
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    d.ctx.settings.lean_checkin = lean
    _, v1 = d.release("1.0.0")
    d.devices = 1
    d.provision_fleet(v1)
    dev = d.fleet[0]
    assert dev.config.credential_file is not None
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
