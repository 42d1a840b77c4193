"""The console as a person uses it, in Debian's chromium (headless, Selenium), against a real
server on 127.0.0.1 over TLS with a simulated fleet: log in, create a production deployment,
a viewer who sees no buttons and is refused anyway, CSRF and session-expiry refusals, an
approver who approves and watches the deployment complete live, the failed device and its
reason, logout. Screenshots go to a temporary directory (printed); one server and one browser
for the whole module."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otaguard.server.console.session import SESSION_COOKIE

from .browser import TABLET, Person, artifacts_dir, remove, wait_for
from .conftest import FAILURE_REASON, ConsoleFleet

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def person(
    console_fleet: ConsoleFleet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Person]:
    p = Person(console_fleet, tmp_path_factory.mktemp("chromium-profile"), artifacts_dir("browser"))
    try:
        yield p
    finally:
        p.driver.quit()
        remove(Path(str(tmp_path_factory.getbasetemp())) / "chromium-profile0")


@pytest.fixture(scope="module")
def state() -> dict[str, object]:
    return {}


def test_deployer_logs_in_and_creates_a_production_deployment(
    person: Person, console_fleet: ConsoleFleet, state: dict[str, object]
) -> None:
    person.login("dora", "not her password")
    person.arrive("#login-error", "the refusal")
    assert "wrong user name or password" in person.el("#login-error").text
    person.login("dora")
    person.arrive(".cards", "the overview")
    assert "Fleet overview" in person.text()
    assert person.el(".cards .card .big").text == "5"
    person.shot("overview-before")
    person.go("/console/deployments")
    person.el("#d-name").send_keys("rollout-2-0-0")
    person.el("#d-release").send_keys("2.0.0")
    person.el("#d-kind").send_keys("with tag")
    person.el("#d-value").send_keys("demo")
    person.el("#create").click()
    person.arrive("#done", "the new deployment")
    assert "done=created" in person.path
    assert "awaiting approval" in person.el("#dep-state").text
    # the creator may cancel but not approve (and is no approver anyway)
    assert person.els("#action-cancel")
    assert not person.els("#action-approve")
    state["deployment"] = int(person.path.split("/")[3].split("?")[0])
    person.shot("deployment-awaiting-approval")
    person.logout()


def test_viewer_sees_no_buttons_and_is_refused_anyway(
    person: Person, state: dict[str, object]
) -> None:
    dep = state["deployment"]
    person.login("vera")
    person.arrive(".cards", "the overview")
    person.go(f"/console/deployments/{dep}")
    assert "awaiting approval" in person.el("#dep-state").text
    assert person.els("form[action*='/approve']") == []
    assert person.els("form[action*='/cancel']") == []
    assert person.els("#create-panel") == []
    nav = person.el("nav[aria-label=Main]").text
    assert "Audit log" not in nav
    assert "Operators" not in nav
    person.submit_forged(f"/console/deployments/{dep}/approve", None)  # her valid CSRF token
    wait_for(lambda: "Not allowed" in person.text(), what="the refusal")
    assert "deployment.approve is not allowed for viewer" in person.text()
    person.shot("viewer-refused")
    person.go(f"/console/deployments/{dep}")
    assert "awaiting approval" in person.el("#dep-state").text
    person.logout()


def test_a_forged_form_without_the_csrf_token_is_refused(
    person: Person, state: dict[str, object]
) -> None:
    dep = state["deployment"]
    person.login("abel")
    person.arrive(".cards", "the overview")  # the login's answer, before going elsewhere
    person.go(f"/console/deployments/{dep}")
    assert person.el("#action-approve").is_enabled()
    person.submit_forged(f"/console/deployments/{dep}/approve", "not-the-token")
    wait_for(lambda: "security token" in person.text(), what="the CSRF refusal")
    person.go(f"/console/deployments/{dep}")
    assert "awaiting approval" in person.el("#dep-state").text


def test_approver_approves_and_watches_the_deployment_complete_live(
    person: Person, console_fleet: ConsoleFleet, state: dict[str, object]
) -> None:
    dep = state["deployment"]
    person.go(f"/console/deployments/{dep}")
    person.el("#action-approve").click()
    person.arrive("#done", "the approval")
    assert "done=approved" in person.path
    assert "active" in person.el("#dep-state").text
    person.driver.execute_script("window.__sameDocument = true;")
    runner = threading.Thread(target=lambda: console_fleet.runs.extend(console_fleet.demo.run()))
    runner.start()
    try:
        wait_for(
            lambda: person.el("#dep-state").get_attribute("data-state") == "completed",
            timeout=90,
            what="the deployment to complete on the page",
        )
    finally:
        runner.join(timeout=120)
    # updated in place by polling, not by reloading the page
    assert person.driver.execute_script("return window.__sameDocument === true;")
    assert person.el("[data-count=succeeded]").text == "4"
    assert person.el("[data-count=failed]").text == "1"
    assert "is completed" in person.el("#live-status").text
    person.shot("deployment-completed-live")
    assert person.csp_violations() == []


def test_find_the_failed_device_and_why(
    person: Person, console_fleet: ConsoleFleet, state: dict[str, object]
) -> None:
    person.go(f"/console/deployments/{state['deployment']}")
    row = person.el("#failed-devices tbody tr")
    assert console_fleet.failing in row.text
    assert FAILURE_REASON in row.text
    person.shot("deployment-failed-devices")
    person.go("/console/devices")
    person.el("#f-state").send_keys("rolled back")
    person.el("#filter").click()
    person.arrive("#devices[data-query='state=rolled_back']", "the filtered list")
    rows = person.els("#devices tbody tr")
    assert [r.text.split()[0] for r in rows] == [console_fleet.failing]
    person.shot("devices-filtered")
    rows[0].find_element("css selector", "a").click()
    person.arrive("#timeline", "the device")
    assert person.path == f"/console/devices/{console_fleet.failing}"
    first = person.el("#timeline li[data-kind=report]")
    assert "rolled back" in first.text
    assert FAILURE_REASON in first.text
    person.shot("device")
    person.go("/console/")
    assert "2.0.0" in person.el(".charts").text
    person.shot("overview")
    person.go("/console/releases")
    assert "threshold met" in person.el("#releases").text
    person.shot("releases")
    assert person.csp_violations() == []


def test_expired_session_is_refused(person: Person, console_fleet: ConsoleFleet) -> None:
    short = console_fleet.ctx.identity.create_token(
        "abel", scopes=["*"], ttl=dt.timedelta(seconds=1)
    )
    person.driver.delete_cookie(SESSION_COOKIE)
    person.driver.add_cookie(
        {
            "name": SESSION_COOKIE,
            "value": short.token,
            "path": "/",
            "secure": True,
            "httpOnly": True,
            "sameSite": "Strict",
        }
    )
    person.go("/console/devices")
    assert person.path == "/console/devices"
    time.sleep(1.2)
    person.go("/console/deployments")
    assert person.path.startswith("/console/login?next=/console/deployments")
    assert "session has expired" in person.text()
    assert person.driver.get_cookie(SESSION_COOKIE) is None


def test_logout_ends_the_session_on_the_server(person: Person) -> None:
    person.login("abel")
    person.arrive(".cards", "the overview")
    kept = person.driver.get_cookie(SESSION_COOKIE)
    assert kept is not None
    assert kept["httpOnly"]
    assert kept["secure"]
    assert kept["sameSite"] == "Strict"
    person.logout()
    assert "You are logged out" in person.text()
    person.shot("logged-out")
    # replaying the old cookie does not bring the session back
    person.driver.add_cookie(
        {k: kept[k] for k in ("name", "value", "path", "secure", "httpOnly", "sameSite")}
    )
    person.go("/console/")
    assert person.path.startswith("/console/login")


def test_admin_pages_and_tablet_width(person: Person, state: dict[str, object]) -> None:
    person.login("ada")
    person.arrive(".cards", "the overview")
    person.go("/console/audit")
    assert "Chain verified" in person.el("#chain-state").text
    assert "deployment.approve" in person.el("#audit").text
    person.shot("audit")
    person.go("/console/operators")
    assert "abel" in person.el("#operators").text
    person.shot("operators")
    person.driver.set_window_size(*TABLET)
    for path in ("/console/", f"/console/deployments/{state['deployment']}", "/console/devices"):
        person.go(path)
        overflow = person.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;"
        )
        assert overflow <= 0, path
    person.go("/console/")
    person.shot("overview-tablet")
    # keyboard: the first Tab reaches the skip link, which leads to the content
    from selenium.webdriver.common.keys import Keys

    person.el("body").send_keys(Keys.TAB)
    assert person.driver.switch_to.active_element.get_attribute("class") == "skip"
    assert person.csp_violations() == []
