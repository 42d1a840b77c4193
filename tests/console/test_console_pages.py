"""What the console's pages show and what their forms do, in process: releases with their
SBOM and fixed CVEs, deployment creation (and its refusals), tags, the audit log's chain state
and export, operators, roles and tokens."""

from __future__ import annotations

import json
import re

from sqlalchemy import update

from otaguard.fleet.status import UpdateEvent
from otaguard.server.console.session import SESSION_COOKIE
from otaguard.store.identity_models import AuditRecord
from otaguard.store.transfers import Served

from .conftest import ConsoleApp


def _release(console: ConsoleApp, custom: dict[str, object] | None = None) -> None:
    console.ctx.store.upsert_release(
        "hw/fw-2.img",
        version="2.0.0",
        hardware=["hw"],
        security_version=1,
        sha256="ab" * 32,
        length=2048,
        custom=custom or {},
    )


def test_releases_show_sbom_fixed_cves_and_unsigned_state(console: ConsoleApp) -> None:
    _release(
        console,
        {"sbom_sha256": "cd" * 32, "fixes": ["CVE-2026-0001", "CVE-2026-0002"], "notes": "fixes"},
    )
    html = console.client.get(
        "/console/releases", cookies={SESSION_COOKIE: console.session("vera")}
    ).text
    assert "CVE-2026-0001" in html
    assert "CVE-2026-0002" in html
    assert "SBOM sha256" in html
    assert "cdcdcdcdcdcd" in html
    # no published TUF metadata lists it: said, not assumed signed
    assert "not found in the published TUF metadata" in html
    assert "otaguard release add" in html


def test_create_deployment_from_the_form_and_its_refusals(console: ConsoleApp) -> None:
    _release(console)
    console.ctx.store.register_device("dev-1", "hw", "c1", ["canary"])
    console.ctx.store.register_device("dev-2", "other-hw", "c2", ["canary"])
    dora = console.session("dora")
    form = {"name": "canary-2", "target_name": "hw/fw-2.img", "kind": "tag", "value": "canary"}
    r = console.post("/console/deployments", dora, form)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/deployments/1?done=created&excluded=1"
    dep = console.ctx.store.get_deployment(1)
    assert (dep.created_by, dep.selector, dep.total) == ("dora", {"all": False, "tag": "canary"}, 1)
    page = console.client.get(r.headers["location"], cookies={SESSION_COOKIE: dora}).text
    assert "1 selected device could not install the release and was left out" in page
    # nothing compatible: refused with the reason, nothing created
    bad = console.post(
        "/console/deployments", dora, {**form, "kind": "hardware", "value": "other-hw"}
    )
    assert bad.status_code == 422
    assert "can install hw/fw-2.img" in bad.text
    empty = console.post("/console/deployments", dora, {**form, "value": ""})
    assert empty.status_code == 422
    invalid = console.post("/console/deployments", dora, {**form, "name": "no spaces allowed"})
    assert invalid.status_code == 422
    assert "name" in invalid.text
    assert console.ctx.store.count_deployments() == 1


def test_tags_are_edited_by_a_deployer(console: ConsoleApp) -> None:
    console.ctx.store.register_device("dev-1", "hw", "c1", ["old"])
    r = console.post(
        "/console/devices/dev-1/tags", console.session("dora"), {"tags": "canary, eu-west"}
    )
    assert r.status_code == 303
    assert console.ctx.store.get_device("dev-1").tags == ["canary", "eu-west"]
    page = console.client.get(
        "/console/devices?tag=canary", cookies={SESSION_COOKIE: console.session("vera")}
    )
    assert "dev-1" in page.text
    assert "1 device match" in page.text


def test_device_list_filters_and_pages(console: ConsoleApp) -> None:
    for i in range(60):
        console.ctx.store.register_device(f"d-{i:02d}", "hw" if i % 2 else "hx", "c", [])
    vera = {SESSION_COOKIE: console.session("vera")}
    first = console.client.get("/console/devices", cookies=vera).text
    assert "60 devices, showing 1\u201350" in first
    assert "d-49" in first
    assert "d-50" not in first
    second = console.client.get("/console/devices?page=2", cookies=vera).text
    assert "showing 51\u201360" in second
    assert "d-59" in second
    only = console.client.get("/console/devices?hardware=hx", cookies=vera).text
    assert "30 devices match" in only
    none = console.client.get("/console/devices?version=9.9", cookies=vera).text
    assert "No device matches these filters" in none


def test_audit_page_shows_a_broken_chain_and_exports_the_log(console: ConsoleApp) -> None:
    ada = {SESSION_COOKIE: console.session("ada")}
    console.ctx.identity.audit(actor="test", action="one", target="x")
    console.ctx.identity.audit(actor="test", action="two", target="y")
    ok = console.client.get("/console/audit", cookies=ada).text
    assert "Chain verified" in ok
    export = console.client.get("/console/audit/export", cookies=ada)
    assert export.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in export.headers["content-disposition"]
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [e["action"] for e in lines[:2]] == ["one", "two"]
    with console.ctx.store.session() as s:
        s.execute(update(AuditRecord).where(AuditRecord.seq == 1).values(target="edited"))
    broken = console.client.get("/console/audit", cookies=ada).text
    assert "Chain broken" in broken
    assert "entry 1: content changed: does not match its hash (edited)" in broken


def test_admin_manages_operators_roles_and_tokens(console: ConsoleApp) -> None:
    ada = console.session("ada")
    r = console.post(
        "/console/operators",
        ada,
        {"name": "newbie", "password": "a long password", "roles": ["viewer", "deployer"]},
    )
    assert r.status_code == 303
    assert console.ctx.identity.get_user("newbie").roles == ["deployer", "viewer"]
    r = console.post("/console/operators/newbie/roles", ada, {"roles": ["approver"]})
    assert r.status_code == 303
    assert console.ctx.identity.get_user("newbie").roles == ["approver"]
    bad = console.post("/console/operators/newbie/roles", ada, {"roles": ["emperor"]})
    assert bad.status_code == 400
    assert "unknown role" in bad.text
    issued = console.ctx.identity.create_token("newbie", scopes=["*"], label="script")
    page = console.client.get("/console/operators", cookies={SESSION_COOKIE: ada}).text
    assert issued.id in page
    assert issued.token not in page
    assert console.post(f"/console/operators/tokens/{issued.id}/revoke", ada).status_code == 303
    assert [t.revoked for t in console.ctx.identity.list_tokens("newbie")] == [True]
    actions = [e.action for e in console.ctx.identity.audit_entries() if e.actor == "user:ada"]
    assert actions == ["user.manage"] * 4  # add, roles, refused roles (400), revoke


def test_operators_revoke_only_their_own_tokens(console: ConsoleApp) -> None:
    vera = console.session("vera")
    mine = console.ctx.identity.create_token("vera", scopes=["*"], label="mine")
    theirs = console.ctx.identity.create_token("dora", scopes=["*"], label="theirs")
    page = console.client.get("/console/tokens", cookies={SESSION_COOKIE: vera}).text
    assert mine.id in page
    assert theirs.id not in page
    assert console.post(f"/console/tokens/{theirs.id}/revoke", vera).status_code == 404
    assert console.post(f"/console/tokens/{mine.id}/revoke", vera).status_code == 303
    revoked = {t.id: t.revoked for t in console.ctx.identity.list_tokens()}
    assert revoked[mine.id] is True
    assert revoked[theirs.id] is False


def _device_rows(deployment_page: str) -> list[str]:
    """The device ids in the deployment page's "Devices" table (not its failed list)."""
    devices = deployment_page.split('id="targets-h"', 1)[1]
    return re.findall(r'<td><a href="/console/devices/([^"]+)">', devices)


def test_console_filters_devices_and_a_deployment_by_the_same_state(console: ConsoleApp) -> None:
    """One vocabulary (issue 15): ``state=rolled_back`` on the device list and on a
    deployment's page find the same device; ``waiting`` likewise."""
    _release(console)
    store = console.ctx.store
    for device_id in ("dev-ok", "dev-rb", "dev-wait"):
        store.register_device(device_id, "hw", "c", ["lab"])
    dep = store.create_deployment(
        name="d", target_name="hw/fw-2.img", selector={"tag": "lab"}, created_by="dora"
    )
    for device_id, event in (
        ("dev-ok", UpdateEvent.COMMITTED),
        ("dev-rb", UpdateEvent.ROLLED_BACK),
        ("dev-wait", UpdateEvent.WAITING),
    ):
        store.record_event(
            device_id, event=event, deployment_id=dep.id, version="2.0.0", slot="b", detail={}
        )
    vera = {SESSION_COOKIE: console.session("vera")}
    for state, device_id in (("rolled_back", "dev-rb"), ("waiting", "dev-wait")):
        devices = console.client.get(f"/console/devices?state={state}", cookies=vera).text
        page = console.client.get(f"/console/deployments/{dep.id}?state={state}", cookies=vera)
        assert page.status_code == 200
        assert _device_rows(page.text) == [device_id], state
        assert f"/console/devices/{device_id}" in devices
        others = {"dev-ok", "dev-rb", "dev-wait"} - {device_id}
        assert not any(f'/console/devices/{o}"' in devices for o in others), state
        assert f'?state={state}" aria-current="page"' in page.text
    # The page's tabs count each state; an unknown state filters nothing out.
    page = console.client.get(f"/console/deployments/{dep.id}?state=bogus", cookies=vera).text
    assert "rolled back (1)" in page
    assert "waiting (1)" in page
    assert _device_rows(page) == ["dev-ok", "dev-rb", "dev-wait"]


def test_deployment_page_shows_the_bytes_served(console: ConsoleApp) -> None:
    """The fleet bytes view on the deployment page: nothing yet, then the recorded figures."""
    _release(console)
    console.ctx.store.register_device("dev-1", "hw", "c1", ["canary"])
    dora = console.session("dora")
    form = {"name": "canary-2", "target_name": "hw/fw-2.img", "kind": "tag", "value": "canary"}
    assert console.post("/console/deployments", dora, form).status_code == 303
    page = console.client.get("/console/deployments/1", cookies={SESSION_COOKIE: dora}).text
    assert "nothing served to the deployment&#39;s devices yet" in page
    resolve = lambda name, digest: ("hw/fw-2.img", name.endswith(".otadelta"))  # noqa: E731
    console.ctx.store.transfers.record(
        [Served("dev-1", None, "hw/fw-2.img.from-x.otadelta", "d" * 64, 512)], resolve
    )
    page = console.client.get("/console/deployments/1", cookies={SESSION_COOKIE: dora}).text
    section = page[page.index('id="transfer"') :]
    assert "512 B (512 B; deltas 512 B)" in section
    assert "2.00 KiB (2048 B)" in section  # the release's full image length
    assert "1.50 KiB (1536 B) (75.0% of the full images)" in section
    assert "1, 1 of them by a delta" in section
