"""An operator retries a device that failed a deployment
(``POST /api/v1/deployments/{id}/devices/{device_id}/retry``): the target is pending again, the
completed deployment active again, and the device installs the release at its next check-in.
Only failed devices retry (409 otherwise); a viewer may not."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import pytest

from otaguard.demo import Demo
from otaguard.errors import OTAGuardError


def test_failed_device_retried_then_succeeds(demo_world: Demo) -> None:
    d = demo_world
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    healthy = {"b": False}
    d.devices = 1
    d.provision_fleet(v1, health_check=lambda b: (b.slot == "a" or healthy["b"], "xyz down"))
    (dev,) = d.fleet
    dep_id = d.deploy(v2_name)
    dev.run_until_settled()
    assert d.api is not None
    (target,) = d.api.deployment_devices(dep_id)
    assert target["status"] == "failed"
    assert d.api.deployment(dep_id)["state"] == "completed"
    before = dev.run_once()
    assert before.action == "idle"  # control: without a retry nothing is offered again

    url = f"/api/v1/deployments/{dep_id}/devices/{dev.config.device_id}/retry"
    retried: dict[str, Any] = d.api._call("POST", url)
    assert retried["status"] == "pending"
    assert d.api.deployment(dep_id)["state"] == "active"
    with pytest.raises(OTAGuardError, match="only failed devices"):
        d.api._call("POST", url)  # pending now: nothing to retry

    healthy["b"] = True  # the operator fixed what broke the health check
    dev.run_until_settled()
    (target,) = d.api.deployment_devices(dep_id)
    assert target["status"] == "succeeded"
    assert (dev.version, dev.slot) == ("2.0.0", "b")


def test_retry_is_a_deployer_action(demo_world: Demo) -> None:
    from otaguard.identity.rbac import ROLE_ACTIONS, ROUTE_ACTIONS, Action, Role

    key = ("POST", "/api/v1/deployments/{deployment_id}/devices/{device_id}/retry")
    assert ROUTE_ACTIONS[key] is Action.DEPLOYMENT_RETRY
    assert Action.DEPLOYMENT_RETRY in ROLE_ACTIONS[Role.DEPLOYER]
    assert Action.DEPLOYMENT_RETRY not in ROLE_ACTIONS[Role.VIEWER]
    assert demo_world.ctx is not None
    tls = demo_world.ctx.settings.tls
    assert tls is not None
    r = httpx.post(
        f"{demo_world.url}/api/v1/deployments/1/devices/x/retry",
        verify=ssl.create_default_context(cafile=str(tls.ca_cert)),
        timeout=10,
    )
    assert r.status_code == 401  # anonymous: refused
