"""Phased rollouts and alerts as a person handles them, in Debian's chromium (headless,
Selenium) against a real server on 127.0.0.1 over TLS with a simulated fleet: a deployer
creates a two-phase rollout, pauses and resumes it, watches each phase's bar fill live while
the fleet updates, advances it from the keyboard-reachable button, finds the device that failed
in the second phase; acknowledges an alert from the keyboard; a viewer sees no control and her
forged posts are refused (403). Screenshots go to a temporary directory (printed)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from otaguard.fleet.alerts import Alert, AlertKind, Severity
from otaguard.server.evaluator import evaluate_one
from otaguard.store.models import DeploymentTarget

from .browser import Person, artifacts_dir, remove, wait_for
from .conftest import FAILURE_REASON, ConsoleFleet

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def person(
    rollout_fleet: ConsoleFleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Person]:
    profile = tmp_path_factory.mktemp("chromium-rollouts")
    p = Person(rollout_fleet, profile, artifacts_dir("rollouts"))
    try:
        yield p
    finally:
        p.driver.quit()
        remove(profile)


@pytest.fixture(scope="module")
def state() -> dict[str, object]:
    return {}


def _phase(person: Person, index: int, part: str) -> str:
    return str(person.el(f'#phases [data-phase="{index}"] [data-phase-{part}]').text)


def _fleet_round(fleet: ConsoleFleet, dep: int) -> threading.Thread:
    """The fleet checks in once (devices of released phases update), then the rollout is
    evaluated as the server's evaluator does every few seconds (here at once, to be quick)."""

    def run() -> None:
        fleet.runs.extend(fleet.demo.run())
        evaluate_one(fleet.ctx, dep)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_deployer_creates_pauses_and_resumes_a_phased_rollout(
    person: Person, rollout_fleet: ConsoleFleet, state: dict[str, object]
) -> None:
    person.login("dora")
    person.arrive(".cards", "the overview")
    person.go("/console/deployments")
    person.el("#d-name").send_keys("phased-2-0-0")
    person.el("#d-release").send_keys("2.0.0")
    person.el("#d-kind").send_keys("all devices")
    person.el("#d-shares").send_keys("40 100")
    soak = person.el("#d-soak")
    soak.clear()
    soak.send_keys("0")
    person.el("#d-advance").send_keys("when an operator advances it")
    person.el("#create").click()
    person.arrive("#phases", "the new phased deployment")
    dep = int(person.path.split("/")[3].split("?")[0])
    state["deployment"] = dep
    assert [_phase(person, i, "label") for i in (0, 1)] == ["current", "waiting"]
    assert person.el("#rollout-status").get_attribute("data-status") == "running"
    # every control is reachable with the keyboard alone
    controls = {"action-pause", "action-advance", "action-abort"}
    assert person.tab_reaches(controls) == controls
    person.el("#action-pause").click()
    person.arrive("#action-resume", "the paused rollout")
    assert "Rollout paused" in person.el("#done").text
    assert person.el("#rollout-status").get_attribute("data-status") == "paused"
    assert person.els("#action-pause") == []
    person.shot("rollout-paused")
    person.el("#action-resume").click()
    person.arrive("#action-pause", "the resumed rollout")
    assert person.el("#rollout-status").get_attribute("data-status") == "running"
    audit = [e for e in rollout_fleet.ctx.identity.audit_entries() if e.target.endswith("pause")]
    assert [(e.action, e.actor, e.detail["via"]) for e in audit] == [
        ("deployment.control", "user:dora", "console")
    ]


def test_deployer_watches_each_phase_progress_live_and_advances(
    person: Person, rollout_fleet: ConsoleFleet, state: dict[str, object]
) -> None:
    dep = int(str(state["deployment"]))
    with rollout_fleet.ctx.store.session(write=False) as s:
        phases = dict(
            s.execute(
                select(DeploymentTarget.device_id, DeploymentTarget.phase).where(
                    DeploymentTarget.deployment_id == dep
                )
            ).all()
        )
    assert sorted(phases.values()) == [0, 0, 1, 1, 1]
    # one device of the second phase will fail its health check after installing
    failing = sorted(d for d, p in phases.items() if p == 1)[0]
    device = next(d for d in rollout_fleet.demo.fleet if d.config.device_id == failing)
    device._health = lambda _boot: (False, FAILURE_REASON)
    state["failing"] = failing
    person.driver.execute_script("window.__sameDocument = true;")
    _fleet_round(rollout_fleet, dep).join(timeout=90)
    wait_for(lambda: _phase(person, 0, "label") == "done", what="phase 1 done on the page")
    assert _phase(person, 0, "summary").startswith("2/2 finished")
    assert _phase(person, 1, "label") == "waiting"
    wait_for(lambda: "waiting for an operator" in person.el("#rollout-decision").text)
    assert person.driver.execute_script("return window.__sameDocument === true;")
    person.shot("rollout-phase-one-done")
    person.el("#action-advance").click()
    person.arrive("#done", "the advance")
    assert "done=advanced" in person.path
    assert _phase(person, 1, "label") == "current"
    person.driver.execute_script("window.__sameDocument = true;")
    _fleet_round(rollout_fleet, dep).join(timeout=90)
    wait_for(
        lambda: person.el("#dep-state").get_attribute("data-state") == "completed",
        timeout=60,
        what="the rollout to complete on the page",
    )
    assert person.driver.execute_script("return window.__sameDocument === true;")
    assert _phase(person, 1, "summary") == "3/3 finished, 1 failed, rolled back or silent"
    assert person.el("[data-count=failed]").text == "1"
    assert person.csp_violations() == []
    person.go(f"/console/deployments/{dep}")
    row = person.el("#failed-devices tbody tr")
    assert failing in row.text
    assert FAILURE_REASON in row.text
    person.shot("rollout-phases")


def test_deployer_acknowledges_an_alert_from_the_keyboard(
    person: Person, rollout_fleet: ConsoleFleet, state: dict[str, object]
) -> None:
    failing = str(state["failing"])
    [alert] = rollout_fleet.ctx.store.monitoring.raise_alerts(
        [
            Alert(
                AlertKind.FAILURE_SPIKE,
                Severity.CRITICAL,
                f"device:{failing}",
                f"{failing} rolled back after its health check failed",
                {"deployment": int(str(state["deployment"])), "rolled_back": 1},
            )
        ]
    )
    state["alert"] = alert.id
    person.go("/console/")
    assert person.el("#open-alerts .big").text == "1"
    assert "rolled back after its health check failed" in person.el("#overview-alerts").text
    assert "Active deployments and rollouts" in person.text()
    person.shot("overview-alerts")
    person.go("/console/alerts")
    assert "failure spike" in person.el("#alerts").text
    assert "rolled back" in person.el("#alerts .evidence").text
    person.shot("alerts")
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    button = f"ack-{alert.id}"
    assert person.tab_reaches({button}) == {button}
    ActionChains(person.driver).send_keys(Keys.ENTER).perform()
    person.arrive("#done", "the acknowledgement")
    assert "No open alert" in person.el("#alerts-empty").text
    [view] = rollout_fleet.ctx.store.monitoring.alerts()[0]
    assert view.acknowledged_by == "dora"
    person.go("/console/alerts?show=acknowledged")
    assert "by dora" in person.el("#alerts").text
    person.go(f"/console/devices/{failing}")
    kinds = {str(li.get_attribute("data-kind")) for li in person.els("#timeline li")}
    assert {"report", "alert", "checkin"} <= kinds
    person.shot("device-timeline")
    assert person.csp_violations() == []
    person.logout()


def test_viewer_sees_no_control_and_forged_posts_are_refused(
    person: Person, rollout_fleet: ConsoleFleet, state: dict[str, object]
) -> None:
    from otaguard.fleet.plan_codec import plan_from_json

    plan = plan_from_json({"phases": [{"name": "a", "share": 0.5}, {"name": "b", "share": 1.0}]})
    running = rollout_fleet.ctx.store.create_deployment(
        name="still-running",
        target_name=rollout_fleet.v2_name,
        selector={"all": True},
        created_by="dora",
        plan=plan,
        allow_downgrade=True,
    ).id
    [alert] = rollout_fleet.ctx.store.monitoring.raise_alerts(
        [Alert(AlertKind.UNKNOWN_FIRMWARE, Severity.WARNING, "hardware:x", "odd image", {})]
    )
    person.login("vera")
    person.arrive(".cards", "the overview")
    person.go(f"/console/deployments/{running}")
    assert len(person.els("#phases [data-phase]")) == 2
    forms = [f.get_attribute("action") for f in person.els("form")]
    assert [str(f).removeprefix(rollout_fleet.url) for f in forms] == ["/console/logout"]
    for verb in ("pause", "advance", "abort"):
        assert person.fetch_post(f"/console/deployments/{running}/{verb}") == 403, verb
    assert rollout_fleet.ctx.store.rollouts.view(running)["status"] == "running"
    person.go("/console/alerts")
    assert "odd image" in person.el("#alerts").text
    assert person.els("#alerts button") == []
    assert person.fetch_post(f"/console/alerts/{alert.id}/acknowledge") == 403
    assert rollout_fleet.ctx.store.monitoring.alerts(acknowledged=False)[1] == 1
    # the refusal as a page, too
    person.submit_forged(f"/console/deployments/{running}/pause", None)
    wait_for(lambda: "Not allowed" in person.text(), what="the refusal page")
    assert "deployment.control is not allowed for viewer" in person.text()
    person.shot("viewer-refused-rollout")
    person.logout()
