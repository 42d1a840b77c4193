"""One status vocabulary (issue 15): a device found by ``state=X`` on the device list is found
by ``state=X`` on its deployment's device list, for every state (``rolled_back``, ``waiting``,
``idle``...), through the management API and through ``otaguard mgmt``; the deployment's
summary counts the same states, and each target row names its state."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from otaguard.cli.main import app
from otaguard.demo import HARDWARE, Demo
from otaguard.fleet.status import DeviceState, UpdateEvent


def _world(d: Demo) -> tuple[int, dict[DeviceState, str], str]:
    """One device per state, all in one deployment, each having last reported its state for
    it (``idle``: nothing yet); a device outside the deployment rolled back elsewhere."""
    assert d.api is not None
    assert d.ctx is not None
    api = d.api.http
    name, _ = d.release("1.0.0")
    owner = {state: f"st-{n:02d}-{state.value}" for n, state in enumerate(DeviceState)}
    for device_id in [*owner.values(), "outsider"]:
        api.post("/api/v1/devices", json={"id": device_id, "hardware": HARDWARE}).raise_for_status()
    dep_id = int(d.api.create_deployment("vocab", name, {"devices": list(owner.values())})["id"])
    for state, device_id in owner.items():
        if state is DeviceState.IDLE:
            continue
        d.ctx.store.record_event(
            device_id,
            event=UpdateEvent(state.value),
            deployment_id=dep_id,
            version="1.0.0",
            slot="b",
            detail={"reason": "waiting: server unreachable"}
            if state is DeviceState.WAITING
            else {},
        )
    d.ctx.store.record_event(
        "outsider", event=UpdateEvent.ROLLED_BACK, deployment_id=None, version="1.0.0",
        slot="a", detail={},
    )  # fmt: skip
    d.ctx.identity.add_user("looker", ["viewer"], None)
    token = d.ctx.identity.create_token("looker", scopes=["*"]).token
    return dep_id, owner, token


def _ids(page: dict[str, Any], key: str) -> list[str]:
    return sorted(item[key] for item in page["items"])


def test_every_state_filters_the_same_on_devices_and_on_a_deployment(demo_world: Demo) -> None:
    d = demo_world
    dep_id, owner, token = _world(d)
    assert d.api is not None
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    api = d.api.http
    env = {
        "OTAGUARD_TOKEN": token,
        "OTAGUARD_SERVER": d.url,
        "OTAGUARD_CA": str(d.ctx.settings.tls.ca_cert),
        "OTAGUARD_CONFIG": str(d.run_dir / "no-credentials.toml"),
        "OTAGUARD_CONTEXT": None,
        "COLUMNS": "250",
    }
    runner = CliRunner()

    def cli(*args: str) -> dict[str, Any]:
        r = runner.invoke(app, ["mgmt", *args, "--json"], env=env)
        assert r.exit_code == 0, (args, r.output)
        result: dict[str, Any] = json.loads(r.stdout)
        return result

    members = set(owner.values())
    for state in DeviceState:
        expected = [owner[state]]
        devices = api.get("/api/v1/devices", params={"state": state.value, "limit": 1000})
        assert devices.status_code == 200, devices.text
        on_devices = [i for i in _ids(devices.json(), "id") if i in members]
        targets = api.get(f"/api/v1/deployments/{dep_id}/devices", params={"state": state.value})
        assert targets.status_code == 200, targets.text
        assert on_devices == _ids(targets.json(), "device_id") == expected, state
        assert targets.json()["total"] == 1
        assert [t["state"] for t in targets.json()["items"]] == [state.value]
        cli_devices = cli("devices", "list", "--state", state.value, "--limit", "1000")
        assert [i for i in _ids(cli_devices, "id") if i in members] == expected, state
        cli_targets = cli("deployments", "devices", str(dep_id), "--state", state.value)
        assert _ids(cli_targets, "device_id") == expected, state

    # The device list finds every rolled-back device; the deployment, its own.
    rolled = api.get("/api/v1/devices", params={"state": "rolled_back"}).json()
    assert _ids(rolled, "id") == sorted([owner[DeviceState.ROLLED_BACK], "outsider"])
    # Waiting is transient: the entry is still in progress; rolled back is a failure.
    rows = {t["device_id"]: t for t in d.api.deployment_devices(dep_id)}
    waiting = rows[owner[DeviceState.WAITING]]
    assert (waiting["status"], waiting["detail"]) == ("in_progress", "waiting: server unreachable")
    assert rows[owner[DeviceState.ROLLED_BACK]]["status"] == "failed"
    # The summary counts the same states, one device each.
    summary = api.get(f"/api/v1/deployments/{dep_id}").json()
    assert summary["states"] == {state.value: 1 for state in DeviceState}
    assert cli("deployments", "show", str(dep_id))["states"] == summary["states"]
    # Both filters refuse a state outside the vocabulary, and combine with ``status``.
    for url in ("/api/v1/devices", f"/api/v1/deployments/{dep_id}/devices"):
        r = api.get(url, params={"state": "exploded"})
        assert (r.status_code, r.json()["error"]) == (422, "validation")
    both = api.get(
        f"/api/v1/deployments/{dep_id}/devices", params={"state": "rolled_back", "status": "failed"}
    ).json()
    assert _ids(both, "device_id") == [owner[DeviceState.ROLLED_BACK]]
    none = api.get(
        f"/api/v1/deployments/{dep_id}/devices",
        params={"state": "rolled_back", "status": "pending"},
    ).json()
    assert none["items"] == []
