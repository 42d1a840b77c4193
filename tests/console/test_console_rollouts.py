"""The console's rollout controls and alerts, in process: a phased deployment created from the
form, pause/resume/advance/abort through the API's own steps (same state changes, same audit
facts as the API twin, plus ``via=console``), per-phase progress for the live chart, alerts
listed with their evidence and acknowledged, the overview's open alerts and rollouts, and a
device timeline with health reports, alerts and the last check-in. Every refusal by role or
CSRF leaves the state as it was."""

from __future__ import annotations

import re

from otaguard.fleet.alerts import Alert, AlertKind, Severity
from otaguard.server.console.session import SESSION_COOKIE

from .conftest import ConsoleApp

CONTROLS = ("pause", "resume", "advance", "abort")


def _fleet(console: ConsoleApp, devices: int = 10) -> None:
    console.ctx.store.upsert_release(
        "hw/fw-2.img",
        version="2.0.0",
        hardware=["hw"],
        security_version=0,
        sha256="ab" * 32,
        length=10,
        custom={},
    )
    for i in range(devices):
        console.ctx.store.register_device(f"dev-{i}", "hw", f"credential-{i:02d}-0123456789", [])


def _create_phased(console: ConsoleApp, token: str, name: str = "phased") -> int:
    r = console.post(
        "/console/deployments",
        token,
        {
            "name": name,
            "target_name": "hw/fw-2.img",
            "kind": "all",
            "shares": "20, 100%",
            "soak_minutes": "0",
            "advance": "manual",
        },
    )
    assert r.status_code == 303, r.text
    return int(r.headers["location"].split("/")[3].split("?")[0])


def _get(console: ConsoleApp, path: str, token: str) -> str:
    r = console.client.get(path, cookies={SESSION_COOKIE: token})
    assert r.status_code == 200, (path, r.text)
    return r.text


def _forms(html: str) -> list[str]:
    return re.findall(r'<form method="post" action="([^"]+)"', html)


def _status(console: ConsoleApp, dep: int) -> str:
    return str(console.ctx.store.rollouts.view(dep)["status"])


def test_a_phased_deployment_from_the_form_and_its_phases(console: ConsoleApp) -> None:
    _fleet(console)
    dora = console.session("dora")
    dep = _create_phased(console, dora)
    view = console.ctx.store.rollouts.view(dep)
    assert [p["name"] for p in view["phases"]] == ["20%", "100%"]
    assert [p["released"] for p in view["phases"]] == [True, False]
    created = [e for e in console.ctx.identity.audit_entries() if e.action == "deployment.create"]
    assert created[-1].detail["phased"] is True
    assert created[-1].detail["via"] == "console"
    html = _get(console, f"/console/deployments/{dep}", dora)
    assert 'id="phases"' in html
    assert len(re.findall(r'<li class="phase[ "]', html)) == 2
    assert 'data-phase="0" aria-current="step"' in html
    for verb in ("pause", "advance", "abort"):
        assert f'action="/console/deployments/{dep}/{verb}"' in html
    assert f'action="/console/deployments/{dep}/resume"' not in html  # it is running
    assert f'action="/console/deployments/{dep}/cancel"' not in html  # abort replaces it
    progress = console.client.get(
        f"/console/deployments/{dep}/progress", cookies={SESSION_COOKIE: dora}
    ).json()
    phases = progress["rollout"]["phases"]
    assert [(p["name"], p["label"], p["total"]) for p in phases] == [
        ("20%", "current", 2),
        ("100%", "waiting", 8),
    ]
    assert sum(s["width"] for s in phases[1]["segments"]) == 300


def test_a_bad_phase_list_is_refused_and_nothing_is_created(console: ConsoleApp) -> None:
    _fleet(console, 2)
    dora = console.session("dora")
    for shares, why in (("50 20", "share"), ("ten", "percentages"), ("1 " * 11, "at most")):
        r = console.post(
            "/console/deployments",
            dora,
            {"name": "bad", "target_name": "hw/fw-2.img", "kind": "all", "shares": shares},
        )
        assert r.status_code in (400, 422), shares
        assert why in r.text, (shares, r.text)
    assert console.ctx.store.count_deployments() == 0


def test_pause_resume_advance_abort_from_the_console(console: ConsoleApp) -> None:
    _fleet(console)
    dora = console.session("dora")
    dep = _create_phased(console, dora)
    r = console.post(f"/console/deployments/{dep}/pause", dora, {"note": "checking logs"})
    assert (r.status_code, r.headers["location"]) == (
        303,
        f"/console/deployments/{dep}?done=paused",
    )
    assert _status(console, dep) == "paused"
    html = _get(console, f"/console/deployments/{dep}?done=paused", dora)
    assert "Rollout paused" in html
    assert "checking logs" in html
    assert f'action="/console/deployments/{dep}/resume"' in html
    assert f'action="/console/deployments/{dep}/pause"' not in html
    # a state the rollout cannot leave that way: the API's 409, as a page
    again = console.post(f"/console/deployments/{dep}/pause", dora)
    assert again.status_code == 409
    assert "cannot pause a rollout that is paused" in again.text
    assert console.post(f"/console/deployments/{dep}/resume", dora).status_code == 303
    assert _status(console, dep) == "running"
    forced = console.post(f"/console/deployments/{dep}/advance", dora, {"force": "true"})
    assert forced.headers["location"].endswith("done=forced")
    view = console.ctx.store.rollouts.view(dep)
    assert view["phase"] == 1
    assert [p["released"] for p in view["phases"]] == [True, True]
    assert console.post(f"/console/deployments/{dep}/abort", dora).status_code == 303
    assert console.ctx.store.deployment_state(dep) == "aborted"
    html = _get(console, f"/console/deployments/{dep}", dora)
    assert _forms(html) == ["/console/logout"]  # nothing left to do
    assert 'data-final="1"' in html


def test_console_controls_are_audited_like_their_api_twins(console: ConsoleApp) -> None:
    _fleet(console)
    dora = console.session("dora")
    by_console = _create_phased(console, dora, "one")
    by_api = _create_phased(console, dora, "two")
    assert console.post(f"/console/deployments/{by_console}/pause", dora).status_code == 303
    r = console.client.post(
        f"/api/v1/deployments/{by_api}/pause",
        json={"note": ""},
        headers={"Authorization": f"Bearer {dora}"},
    )
    assert r.status_code == 200
    pauses = [e for e in console.ctx.identity.audit_entries() if e.action == "deployment.control"]
    console_entry, api_entry = pauses[-2:]
    assert console_entry.actor == api_entry.actor == "user:dora"
    assert console_entry.outcome == api_entry.outcome == "ok"
    # the same facts, but for the HTTP status (a redirect to the page instead of the JSON)
    assert (console_entry.detail["status"], api_entry.detail["status"]) == (303, 200)
    assert console_entry.detail == {
        **api_entry.detail,
        "deployment": by_console,
        "via": "console",
        "status": 303,
    }
    assert "via" not in api_entry.detail


def test_a_viewer_sees_no_control_and_is_refused_anyway(console: ConsoleApp) -> None:
    _fleet(console)
    dep = _create_phased(console, console.session("dora"))
    vera = console.session("vera")
    for path in (f"/console/deployments/{dep}", "/console/alerts", "/console/"):
        assert _forms(_get(console, path, vera)) == ["/console/logout"], path
    for verb in CONTROLS:
        r = console.post(f"/console/deployments/{dep}/{verb}", vera)
        assert r.status_code == 403, verb
        assert "deployment.control is not allowed for viewer" in r.text
    assert _status(console, dep) == "running"
    # an approver may approve deployments but not steer rollouts
    abel = console.session("abel")
    assert console.post(f"/console/deployments/{dep}/pause", abel).status_code == 403
    # a deployer's forged form without the session's CSRF token is refused too
    dora = console.session("dora")
    assert console.post(f"/console/deployments/{dep}/pause", dora, csrf="x" * 64).status_code == 403
    assert _status(console, dep) == "running"
    # control: the same post with the session's token works
    assert console.post(f"/console/deployments/{dep}/pause", dora).status_code == 303
    assert _status(console, dep) == "paused"


def _alert(console: ConsoleApp, device: str = "dev-1") -> int:
    new = console.ctx.store.monitoring.raise_alerts(
        [
            Alert(
                AlertKind.DOWNGRADE_ATTEMPT,
                Severity.CRITICAL,
                f"device:{device}",
                f"{device} reported security version 0, below its recorded 3",
                {"reported": 0, "recorded": 3, "version": "1.0.0"},
            )
        ]
    )
    return new[0].id


def test_alerts_page_lists_open_alerts_with_evidence_and_acknowledges(console: ConsoleApp) -> None:
    _fleet(console, 2)
    alert = _alert(console)
    dora = console.session("dora")
    html = _get(console, "/console/alerts", dora)
    assert "downgrade attempt" in html
    assert "below its recorded 3" in html
    assert "<dt>recorded</dt><dd>3</dd>" in html
    assert 'href="/console/devices/dev-1"' in html
    assert f'action="/console/alerts/{alert}/acknowledge"' in html
    overview = _get(console, "/console/", dora)
    assert re.search(r'id="open-alerts"><span class="big">1</span>', overview)
    assert "below its recorded 3" in overview
    r = console.post(f"/console/alerts/{alert}/acknowledge", dora)
    assert (r.status_code, r.headers["location"]) == (303, f"/console/alerts?done={alert}")
    [view] = console.ctx.store.monitoring.alerts()[0]
    assert view.acknowledged_by == "dora"
    entry = [e for e in console.ctx.identity.audit_entries() if e.action == "alert.acknowledge"]
    facts = {"alert": alert, "kind": "downgrade_attempt", "subject": "device:dev-1"}
    assert entry[-1].detail.items() >= {**facts, "via": "console"}.items()
    assert "No open alert" in _get(console, "/console/alerts", dora)
    done = _get(console, "/console/alerts?show=acknowledged", dora)
    assert "by dora" in done
    assert "acknowledge" not in "".join(_forms(done))
    again = console.post(f"/console/alerts/{alert}/acknowledge", dora)
    assert again.status_code == 409
    assert "was acknowledged by dora" in again.text
    assert re.search(
        r'id="open-alerts"><span class="big">0</span>', _get(console, "/console/", dora)
    )


def test_a_viewer_cannot_acknowledge_nor_can_a_forged_form(console: ConsoleApp) -> None:
    _fleet(console, 2)
    alert = _alert(console)
    vera = console.session("vera")
    html = _get(console, "/console/alerts", vera)
    assert "below its recorded 3" in html  # she may read it
    assert _forms(html) == ["/console/logout"]
    r = console.post(f"/console/alerts/{alert}/acknowledge", vera)
    assert r.status_code == 403
    assert "alert.acknowledge is not allowed for viewer" in r.text
    dora = console.session("dora")
    assert console.post(f"/console/alerts/{alert}/acknowledge", dora, csrf="").status_code == 403
    assert console.ctx.store.monitoring.alerts(acknowledged=False)[1] == 1
    assert console.post("/console/alerts/999999/acknowledge", dora).status_code == 404


def test_device_timeline_has_reports_health_alerts_and_the_last_check_in(
    console: ConsoleApp,
) -> None:
    from otaguard.fleet.status import UpdateEvent
    from otaguard.store.checkin import CheckinRequest, Reported

    _fleet(console, 2)
    report = Reported("hw", "1.0.0", "a", 0, "sim")
    (outcome,) = console.ctx.store.check_in_many([CheckinRequest("dev-1", lambda _k: report)])
    assert outcome.error is None
    console.ctx.store.record_event(
        "dev-1",
        event=UpdateEvent.ROLLED_BACK,
        deployment_id=None,
        version="2.0.0",
        slot="b",
        detail={"error": "health check failed"},
    )
    console.ctx.store.monitoring.record_health(
        "dev-1", version="1.0.0", boot_seconds=12.5, restarts=0, check_passed=False, metrics={}
    )
    _alert(console)
    html = _get(console, "/console/devices/dev-1", console.session("vera"))
    kinds = re.findall(r'data-kind="([a-z]+)"', html)
    assert sorted(kinds) == ["alert", "checkin", "health", "report"]
    assert "health check failed" in html
    assert "health check failed" in html.split('data-kind="report"')[1]
    assert "below its recorded 3" in html
    assert 'href="/console/alerts?show=all"' in html
    assert "<time datetime=" in html  # relative, with the absolute time beside it


def test_a_gated_phase_is_approved_from_the_console_by_a_second_person(
    console: ConsoleApp,
) -> None:
    from otaguard.fleet.plan_codec import plan_from_json
    from otaguard.server.evaluator import evaluate_one

    _fleet(console)
    first = {
        "name": "a",
        "share": 0.2,
        "soak_seconds": 0,
        "criteria": {"min_success_share": 0, "min_sample": 1},
    }
    plan = plan_from_json({"production": True, "phases": [first, {"name": "b", "share": 1.0}]})
    dep = console.ctx.store.create_deployment(
        name="gated", target_name="hw/fw-2.img", selector={"all": True}, created_by="dora",
        plan=plan,
    ).id  # fmt: skip
    from sqlalchemy import select

    from otaguard.fleet.status import UpdateEvent
    from otaguard.store.models import DeploymentTarget

    with console.ctx.store.session(write=False) as s:
        canary = s.scalars(
            select(DeploymentTarget.device_id).where(
                DeploymentTarget.deployment_id == dep, DeploymentTarget.phase == 0
            )
        ).first()
    assert canary is not None
    console.ctx.store.record_event(  # one outcome in the first phase: enough to judge it
        canary, event=UpdateEvent.COMMITTED, deployment_id=dep, version="2.0.0", slot="b",
        detail={},
    )  # fmt: skip
    evaluate_one(console.ctx, dep)
    assert console.ctx.store.rollouts.view(dep)["last_decision"]["reason"] == "awaiting_approval"
    url = f"/console/deployments/{dep}"
    assert "/approve" not in "".join(_forms(_get(console, url, console.session("dora"))))
    html = _get(console, url, console.session("abel"))
    assert f'action="/console/deployments/{dep}/approve"' in html
    assert "Approve the next phase" in html
    assert (
        console.post(f"/console/deployments/{dep}/approve", console.session("abel")).status_code
        == 303
    )
    evaluate_one(console.ctx, dep)
    view = console.ctx.store.rollouts.view(dep)
    assert (view["phase"], [p["released"] for p in view["phases"]]) == (1, [True, True])


def test_console_controls_wake_devices_as_their_api_twins_do(console: ConsoleApp) -> None:
    """The push hooks (MQTT wake-ups) ride on the shared steps: resume offers again, abort
    tells devices to skip, a console approval releases to the devices now."""
    from otaguard.server.push import NoPush

    class Recorder(NoPush):
        def __init__(self) -> None:
            self.notes: list[tuple[str, int]] = []

        def deployment(self, deployment_id: int) -> None:
            self.notes.append(("deployment", deployment_id))

        def cancelled(self, deployment_id: int) -> None:
            self.notes.append(("cancelled", deployment_id))

    _fleet(console)
    dora = console.session("dora")
    dep = _create_phased(console, dora)
    recorder = Recorder()
    console.ctx.push = recorder
    for verb in ("pause", "resume", "abort"):
        assert console.post(f"/console/deployments/{dep}/{verb}", dora).status_code == 303
    assert recorder.notes == [("deployment", dep), ("cancelled", dep)]
