"""The console's own defences, in process: the session cookie, CSRF on every change, session
expiry and logout enforced by the server, the same RBAC as the API (buttons and refusals),
auditing like the API, and the security headers on every page."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from fastapi import FastAPI

from otaguard.identity.rbac import ROUTE_ACTIONS, Action
from otaguard.server.auth import app_routes
from otaguard.server.console.headers import SECURITY_HEADERS
from otaguard.server.console.session import LOGIN_COOKIE, SESSION_COOKIE, csrf_token

from .conftest import ConsoleApp


def test_login_sets_a_secure_httponly_samesite_strict_session_cookie(console: ConsoleApp) -> None:
    password = console.password("vera")
    form = console.client.get("/console/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert nonce is not None
    r = console.client.post(
        "/console/login",
        data={"username": "vera", "password": password, "login_csrf": nonce.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE))
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=28800"):
        assert attribute in cookie
    assert "Domain" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    page = console.client.get("/console/", cookies={SESSION_COOKIE: token})
    assert page.status_code == 200
    assert token not in page.text  # never in a page (nor in a URL: it is only a cookie)
    assert "vera" in page.text


def test_login_is_the_apis_login_wrong_password_lockout_and_audit(console: ConsoleApp) -> None:
    password = console.password("abel")
    for _ in range(5):
        console.client.cookies.clear()
        form = console.client.get("/console/login")
        nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
        assert nonce is not None
        r = console.client.post(
            "/console/login",
            data={"username": "abel", "password": "wrong", "login_csrf": nonce.group(1)},
            follow_redirects=False,
        )
        assert r.status_code == 401
        assert "wrong user name or password" in r.text
        assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    # the account is now locked: even the right password is refused
    console.client.cookies.clear()
    form = console.client.get("/console/login")
    nonce = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert nonce is not None
    r = console.client.post(
        "/console/login",
        data={"username": "abel", "password": password, "login_csrf": nonce.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 401
    assert "locked" in r.text
    logins = [e for e in console.ctx.identity.audit_entries() if e.action == "auth.login"]
    assert len(logins) == 6
    assert all(e.outcome == "failed" and e.detail["via"] == "console" for e in logins)


def test_login_form_without_its_csrf_cookie_is_refused(console: ConsoleApp) -> None:
    console.client.cookies.clear()
    r = console.client.post(
        "/console/login",
        data={"username": "vera", "password": console.password("vera"), "login_csrf": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 400
    assert SESSION_COOKIE not in r.headers.get("set-cookie", "")
    # control: the same form with the cookie the login page set is accepted
    assert console.login("vera")


def test_a_page_without_a_session_goes_to_the_login_page(console: ConsoleApp) -> None:
    console.client.cookies.clear()
    r = console.client.get("/console/deployments", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?next=/console/deployments"


@pytest.mark.parametrize(
    ("next_path", "landing"),
    [
        ("https://evil.example/", "/console/"),
        ("//evil.example/x", "/console/"),
        ("/api/v1/users", "/console/"),
        ("/console/\\evil", "/console/"),
        ("/console/deployments", "/console/deployments"),  # control
    ],
)
def test_login_never_redirects_off_the_console(next_path: str, landing: str) -> None:
    from otaguard.server.console.session import safe_next

    assert safe_next(next_path) == landing


def _deployment(console: ConsoleApp) -> int:
    """A production deployment created by dora, waiting for approval."""
    ctx = console.ctx
    ctx.store.upsert_release(
        "hw/fw-2.img",
        version="2.0.0",
        hardware=["hw"],
        security_version=0,
        sha256="ab" * 32,
        length=10,
        custom={},
    )
    ctx.store.register_device("dev-1", "hw", "cred-1", ["prod"])
    ctx.identity.set_production("prod", True, by="test")
    dep = ctx.store.create_deployment(
        name="rollout",
        target_name="hw/fw-2.img",
        selector={"tag": "prod"},
        created_by="dora",
        production_tags=ctx.identity.production_groups(),
    )
    assert dep.state == "awaiting_approval"
    return dep.id


def test_every_change_needs_the_sessions_csrf_token(console: ConsoleApp) -> None:
    dep = _deployment(console)
    abel = console.session("abel")
    other = console.session("vera")
    path = f"/console/deployments/{dep}/approve"
    for forged in ("", "0" * 64, csrf_token(other)):
        r = console.post(path, abel, csrf=forged)
        assert r.status_code == 403, forged
        assert "security token" in r.text
        assert console.ctx.store.deployment_state(dep) == "awaiting_approval"
    refusals = [e for e in console.ctx.identity.audit_entries() if e.outcome == "csrf"]
    assert len(refusals) == 3
    # control: the session's own token is accepted
    r = console.post(path, abel)
    assert r.status_code == 303
    assert console.ctx.store.deployment_state(dep) == "active"


def test_console_action_is_audited_like_its_api_twin(console: ConsoleApp) -> None:
    dep = _deployment(console)
    abel = console.session("abel")
    assert console.post(f"/console/deployments/{dep}/approve", abel).status_code == 303
    entry = [e for e in console.ctx.identity.audit_entries() if e.action == "deployment.approve"]
    assert len(entry) == 1
    assert entry[0].actor == "user:abel"
    assert entry[0].outcome == "ok"
    assert entry[0].detail["via"] == "console"
    assert entry[0].target == f"POST /console/deployments/{dep}/approve"
    assert console.ctx.identity.approval(dep) == "abel"


def test_two_person_rule_holds_in_the_console(console: ConsoleApp) -> None:
    dep = _deployment(console)
    console.ctx.identity.set_roles("dora", ["deployer", "approver"])
    dora = console.session("dora")
    page = console.client.get(f"/console/deployments/{dep}", cookies={SESSION_COOKIE: dora})
    assert 'id="action-approve"' in page.text
    assert "disabled" in page.text.split('id="action-approve"')[1].split(">")[0]
    r = console.post(f"/console/deployments/{dep}/approve", dora)
    assert r.status_code == 403
    assert "creator" in r.text
    assert console.ctx.store.deployment_state(dep) == "awaiting_approval"


def test_viewer_sees_no_buttons_and_the_server_refuses_anyway(console: ConsoleApp) -> None:
    dep = _deployment(console)
    vera = console.session("vera")
    pages = [f"/console/deployments/{dep}", "/console/deployments", "/console/devices/dev-1"]
    for path in pages:
        html = console.client.get(path, cookies={SESSION_COOKIE: vera}).text
        forms = re.findall(r'<form method="post" action="([^"]+)"', html)
        assert forms == ["/console/logout"], (path, forms)
    for path in (f"/console/deployments/{dep}/approve", f"/console/deployments/{dep}/cancel"):
        r = console.post(path, vera)
        assert r.status_code == 403
        assert "not allowed for viewer" in r.text
    assert console.ctx.store.deployment_state(dep) == "awaiting_approval"
    # control: the same page shows the deployer their cancel button
    dora = console.session("dora")
    html = console.client.get(f"/console/deployments/{dep}", cookies={SESSION_COOKIE: dora}).text
    assert f'action="/console/deployments/{dep}/cancel"' in html
    assert f'action="/console/deployments/{dep}/approve"' not in html


def test_expired_session_is_refused_and_sent_to_login(console: ConsoleApp) -> None:
    short = console.ctx.identity.create_token("vera", scopes=["*"], ttl=dt.timedelta(seconds=1))
    fresh = console.session("vera")
    assert (
        console.client.get("/console/devices", cookies={SESSION_COOKIE: short.token}).status_code
        == 200
    )
    time.sleep(1.2)
    console.client.cookies.clear()
    r = console.client.get(
        "/console/devices", cookies={SESSION_COOKIE: short.token}, follow_redirects=False
    )
    assert r.status_code == 303
    assert r.headers["location"].endswith("&expired=1")
    assert any(c.startswith(f"{SESSION_COOKIE}=;") for c in r.headers.get_list("set-cookie"))
    shown = console.client.get(r.headers["location"])
    assert "session has expired" in shown.text
    # control: a session that has not expired is accepted
    ok = console.client.get(
        "/console/devices", cookies={SESSION_COOKIE: fresh}, follow_redirects=False
    )
    assert ok.status_code == 200


def test_logout_revokes_the_session_on_the_server(console: ConsoleApp) -> None:
    token = console.session("vera")
    assert console.client.get("/console/", cookies={SESSION_COOKIE: token}).status_code == 200
    r = console.post("/console/logout", token)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login?logged_out=1"
    assert any(c.startswith(f"{SESSION_COOKIE}=;") for c in r.headers.get_list("set-cookie"))
    # a copy of the cookie kept by an attacker is worthless now
    again = console.client.get("/console/", cookies={SESSION_COOKIE: token}, follow_redirects=False)
    assert again.status_code == 303
    assert any(
        e.action == "auth.logout" and e.actor == "user:vera"
        for e in console.ctx.identity.audit_entries()
    )


def test_logout_without_the_csrf_token_is_refused(console: ConsoleApp) -> None:
    token = console.session("vera")
    r = console.post("/console/logout", token, csrf="nope")
    assert r.status_code == 403
    assert console.client.get("/console/", cookies={SESSION_COOKIE: token}).status_code == 200


def _console_gets(app: FastAPI) -> list[str]:
    concrete = {"{device_id}": "dev-1", "{deployment_id}": "1", "{name}": "console.css"}
    out = []
    for method, path in app_routes(app):
        if method == "GET" and path.startswith("/console"):
            for k, v in concrete.items():
                path = path.replace(k, v)
            out.append(path)
            if "/deployments/1" in path:  # the phased rollout's page and progress too
                out.append(path.replace("/deployments/1", "/deployments/2"))
    return out


def _assert_headers(r: object, where: str) -> None:
    headers = r.headers  # type: ignore[attr-defined]
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (where, name)
    csp = headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-frame-options"] == "DENY"


def _phased_and_alert(console: ConsoleApp) -> None:
    """A running phased rollout (deployment 2) and an open alert, so the scan sees the phase
    chart, the rollout's buttons and the alert list."""
    from otaguard.fleet.alerts import Alert, AlertKind, Severity
    from otaguard.fleet.plan_codec import plan_from_json

    plan = plan_from_json({"phases": [{"name": "a", "share": 0.5}, {"name": "b", "share": 1.0}]})
    dep = console.ctx.store.create_deployment(
        name="phased",
        target_name="hw/fw-2.img",
        selector={"devices": ["dev-1"]},
        created_by="dora",
        plan=plan,
    )
    assert dep.id == 2
    console.ctx.store.monitoring.raise_alerts(
        [Alert(AlertKind.UNKNOWN_FIRMWARE, Severity.WARNING, "device:dev-1", "odd", {"v": "x"})]
    )


def test_every_console_page_carries_the_security_headers(console: ConsoleApp) -> None:
    _deployment(console)
    _phased_and_alert(console)
    token = console.session("ada")
    app = console.client.app
    assert isinstance(app, FastAPI)
    gets = _console_gets(app)
    assert len(gets) >= 15
    assert "/console/alerts" in gets
    assert "/console/deployments/2" in gets
    for path in gets:
        for cookies in ({SESSION_COOKIE: token}, {}):  # signed in, and sent to login
            r = console.client.get(path, cookies=cookies, follow_redirects=False)
            assert r.status_code < 500, path
            _assert_headers(r, path)
            if r.headers.get("content-type", "").startswith("text/html"):
                assert r.headers["cache-control"] == "no-store"
                assert "<script>" not in r.text, path
                assert " style=" not in r.text, path
                assert re.findall(r"<script[^>]*>", r.text) == [
                    f'<script src="{m}" defer>'
                    for m in re.findall(r'<script src="([^"]+)" defer>', r.text)
                ]
    # errors and refusals too
    _assert_headers(
        console.client.get("/console/devices/nobody", cookies={SESSION_COOKIE: token}), "404"
    )
    _assert_headers(console.post("/console/deployments/1/approve", token), "403")
    _assert_headers(console.post("/console/deployments/2/pause", console.session("vera")), "403")
    _assert_headers(console.post("/console/alerts/1/acknowledge", token), "303")
    # and only the console's: the API keeps its own headers
    assert "content-security-policy" not in console.client.get("/healthz").headers


def test_every_console_route_is_in_the_policy_table(console: ConsoleApp) -> None:
    app = console.client.app
    assert isinstance(app, FastAPI)
    served = [(m, p) for m, p in app_routes(app) if p.startswith("/console")]
    assert len(served) >= 20
    assert [r for r in served if r not in ROUTE_ACTIONS] == []
    actions = {ROUTE_ACTIONS[r] for r in served}
    assert Action.DEPLOYMENT_APPROVE in actions
    assert Action.USER_MANAGE in actions
    # the rollout controls and alerts have the API twins' actions
    for verb in ("pause", "resume", "advance", "abort"):
        key = ("POST", f"/console/deployments/{{deployment_id}}/{verb}")
        assert (
            ROUTE_ACTIONS[key]
            == ROUTE_ACTIONS[("POST", f"/api/v1/deployments/{{deployment_id}}/{verb}")]
        )
    assert ROUTE_ACTIONS[("GET", "/console/alerts")] == Action.ALERT_READ
    assert (
        ROUTE_ACTIONS[("POST", "/console/alerts/{alert_id}/acknowledge")]
        == (ROUTE_ACTIONS[("POST", "/api/v1/alerts/{alert_id}/acknowledge")])
    )


def test_static_files_are_ours_and_cacheable(console: ConsoleApp) -> None:
    r = console.client.get("/console/static/console.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=86400"
    etag = r.headers["etag"]
    assert (
        console.client.get(
            "/console/static/console.js", headers={"if-none-match": etag}
        ).status_code
        == 304
    )
    assert console.client.get("/console/static/nothing.js").status_code == 404
    assert LOGIN_COOKIE  # the login page's cookie name is exported for the browser tests


def test_live_progress_is_bounded_and_never_stale_after_an_action(console: ConsoleApp) -> None:
    dep = _deployment(console)
    abel = console.session("abel")
    cache = console.client.app.state.console_progress  # type: ignore[attr-defined]
    url = f"/console/deployments/{dep}/progress"
    first = console.client.get(url, cookies={SESSION_COOKIE: abel}).json()
    assert first["state"] == "awaiting_approval"
    assert first["counts"]["pending"] == 1
    for _ in range(5):  # many watchers within a second: one database read
        assert console.client.get(url, cookies={SESSION_COOKIE: abel}).json() == first
    assert cache.loads == 1
    assert console.post(f"/console/deployments/{dep}/approve", abel).status_code == 303
    after = console.client.get(url, cookies={SESSION_COOKIE: abel}).json()
    assert after["state"] == "active"  # the action dropped the cached read
    assert after["as_of"] >= first["as_of"]
    page = console.client.get(f"/console/deployments/{dep}", cookies={SESSION_COOKIE: abel}).text
    as_of = re.search(r'data-as-of="(\d+)"', page)
    assert as_of is not None
    assert int(as_of.group(1)) >= after["as_of"]  # the page ignores answers older than itself
