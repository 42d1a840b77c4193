"""Two-person rule through the API with devices checking in: a deployment reaching a group
marked production is offered to no device until an approver other than its creator approves."""

from __future__ import annotations

import httpx

from otaguard.demo import Demo


def test_production_deployment_waits_for_a_second_person(demo_world: Demo) -> None:
    d = demo_world
    assert d.ctx is not None
    assert d.ctx.settings.tls is not None
    _, v1 = d.release("1.0.0")
    v2_name, _ = d.release("2.0.0", security_version=1)
    d.provision_fleet(v1)  # every demo device is tagged "demo"
    ident = d.ctx.identity
    ident.add_user("carol", ["deployer", "approver"])  # creates; may approve others' only
    ident.add_user("bob", ["approver"])
    ident.add_user("root", ["admin"])
    tok = {n: ident.create_token(n, scopes=["*"]).token for n in ("carol", "bob", "root")}

    def api(user: str) -> httpx.Client:
        return httpx.Client(
            base_url=d.url,
            verify=str(d.ctx.settings.tls.ca_cert),  # type: ignore[union-attr]
            headers={"Authorization": f"Bearer {tok[user]}"},
        )

    with api("carol") as carol, api("bob") as bob, api("root") as root:
        assert carol.put("/api/v1/groups/demo", json={"production": True}).status_code == 403
        r = root.put("/api/v1/groups/demo", json={"production": True})
        assert r.json() == {"production": ["demo"]}
        dep = carol.post(
            "/api/v1/deployments",
            json={"name": "prod", "target_name": v2_name, "selector": {"tag": "demo"}},
        ).json()
        assert dep["state"] == "awaiting_approval"
        # devices check in: nothing is offered
        for dev in d.fleet:
            out = dev.run_once()
            assert out.action == "idle", out
            assert dev.version == "1.0.0"
        # the creator cannot approve, an admin is not an approver
        r = carol.post(f"/api/v1/deployments/{dep['id']}/approve")
        assert r.status_code == 403
        assert "creator" in r.json()["detail"]
        assert root.post(f"/api/v1/deployments/{dep['id']}/approve").status_code == 403
        assert d.fleet[0].run_once().action == "idle"
        # a second person approves: from the next check-in the devices update
        r = bob.post(f"/api/v1/deployments/{dep['id']}/approve")
        assert r.status_code == 200, r.text
        assert r.json() == {"deployment_id": dep["id"], "approved_by": "bob", "state": "active"}
        assert bob.post(f"/api/v1/deployments/{dep['id']}/approve").status_code == 409
        for dev in d.fleet:
            dev.run_until_settled()
            assert dev.version == "2.0.0"
        assert carol.get(f"/api/v1/deployments/{dep['id']}").json()["state"] == "completed"
        # a deployment outside production groups needs no approval
        root.put("/api/v1/groups/demo", json={"production": False})
        dep2 = carol.post(
            "/api/v1/deployments",
            json={"name": "lab", "target_name": v2_name, "selector": {"tag": "demo"}},
        ).json()
        assert dep2["state"] == "active"
    audit = [(e.actor, e.action, e.outcome) for e in ident.audit_entries()]
    assert ("user:bob", "deployment.approve", "ok") in audit
    assert ("user:carol", "deployment.approve", "http_403") in audit
    assert ("user:root", "auth.refused", "forbidden") in audit
