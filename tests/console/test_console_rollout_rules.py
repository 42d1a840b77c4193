"""The pure rules behind the rollout and alert pages: which controls each role sees in each
rollout state, a rollout's phases as rows and bars, the phased-plan form, where an alert's
subject links, and the device timeline's merge of reports with health, alerts and check-ins."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from otaguard.errors import CompatibilityError, RolloutPlanError
from otaguard.fleet.plan_codec import plan_from_json
from otaguard.identity.rbac import Principal, Role
from otaguard.server.console import phases, timeline
from otaguard.server.console.actions import RolloutFacts, deployment_actions
from otaguard.server.console.alert_routes import subject_link
from otaguard.server.console.deployment_routes import plan_of
from otaguard.store.views import EventView

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def person(*roles: Role, name: str = "p") -> Principal:
    return Principal(name, frozenset(roles), frozenset({"*"}))


def names(state: str, status: str, who: Principal, phase: int = 0) -> list[str]:
    facts = RolloutFacts(status=status, phase=phase, phases=3)
    return [a.name for a in deployment_actions(state, "dora", who, facts)]


@pytest.mark.parametrize(
    ("state", "status", "phase", "expected"),
    [
        ("active", "running", 0, ["pause", "advance", "abort"]),
        ("active", "running", 2, ["pause", "abort"]),  # the last phase: nothing to advance to
        ("active", "paused", 0, ["resume", "abort"]),
        ("active", "completed", 2, []),
        ("aborted", "aborted", 1, []),
        ("completed", "completed", 2, []),
        ("awaiting_approval", "running", 0, ["cancel"]),  # not started: cancel, not abort
    ],
)
def test_rollout_controls_follow_the_rollouts_state(
    state: str, status: str, phase: int, expected: list[str]
) -> None:
    assert names(state, status, person(Role.DEPLOYER), phase) == expected


@pytest.mark.parametrize("role", [Role.VIEWER, Role.APPROVER, Role.RELEASE_MANAGER])
def test_roles_without_deployment_control_see_no_rollout_control(role: Role) -> None:
    for status in ("running", "paused"):
        assert names("active", status, person(role, name="abel")) == []
    # control: an admin has deployment.control
    assert names("active", "running", person(Role.ADMIN)) == ["pause", "advance", "abort"]


def test_abort_is_marked_dangerous() -> None:
    facts = RolloutFacts("running", 0, 2)
    offered = {a.name: a for a in deployment_actions("active", "x", person(Role.DEPLOYER), facts)}
    assert offered["abort"].danger
    assert not offered["pause"].danger


VIEW: dict[str, Any] = {
    "status": "running",
    "phase": 1,
    "last_decision": {"action": "wait", "message": "soaking: 30 s left", "reason": "soak"},
    "phases": [
        {"name": "10%", "share": 0.1, "released": True, "counts": {"succeeded": 9, "failed": 1}},
        {
            "name": "50%",
            "share": 0.5,
            "released": True,
            "counts": {"pending": 30, "installing": 10},
        },
        {"name": "100%", "share": 1.0, "released": False, "counts": {"pending": 50}},
    ],
}


def test_phase_rows_count_label_and_draw_each_phase() -> None:
    rows = phases.phase_rows(VIEW)
    assert [(r.name, r.label, r.total, r.ended, r.bad) for r in rows] == [
        ("10%", "done", 10, 10, 1),
        ("50%", "current", 40, 0, 0),
        ("100%", "waiting", 50, 0, 0),
    ]
    assert [s.status for s in rows[0].segments][:3] == ["succeeded", "failed", "rolled_back"]
    assert rows[0].segments[0].width == 270.0  # 9 of 10 of the 300-unit bar
    assert rows[1].as_json()["counts"]["installing"] == 10
    assert phases.facts(VIEW) == RolloutFacts("running", 1, 3)
    assert phases.decision_text(VIEW) == "soaking: 30 s left"
    assert phases.decision_text({"last_decision": None}) == ""


def test_the_plan_form_is_read_into_the_apis_plan() -> None:
    assert plan_of("", 60, "auto") is None
    plan = plan_of("1, 10% 50 100", 5, "manual")
    assert plan is not None
    read = plan_from_json(plan)
    assert [p.name for p in read.phases] == ["1%", "10%", "50%", "100%"]
    assert [p.share for p in read.phases] == [0.01, 0.1, 0.5, 1.0]
    assert {p.soak_seconds for p in read.phases} == {300}
    assert {p.advance.value for p in read.phases} == {"manual"}
    for bad in ("ten", "nan", "inf 100", "0 100", "50 150", "-5 100"):
        with pytest.raises(CompatibilityError, match="percentages"):
            plan_of(bad, 0, "auto")
    with pytest.raises(CompatibilityError, match="auto or manual"):
        plan_of("100", 0, "sometimes")
    with pytest.raises(CompatibilityError, match="at most"):
        plan_of(" ".join(["100"] * 11), 0, "auto")
    bad = plan_of("50 20", 0, "auto")  # shares must grow: the API's reader says so
    with pytest.raises(RolloutPlanError):
        plan_from_json(bad)


@pytest.mark.parametrize(
    ("subject", "link"),
    [
        ("device:d 1/x", "/console/devices/d%201%2Fx"),
        ("deployment:12", "/console/deployments/12"),
        ("deployment:12x", None),
        ("hardware:sim-board", "/console/devices?hardware=sim-board"),
        ("source:10.0.0.7", None),
        ("fleet", None),
    ],
)
def test_an_alerts_subject_links_to_its_page(subject: str, link: str | None) -> None:
    assert subject_link(subject) == link


def event(i: int, minute: int, name: str = "installed") -> EventView:
    return EventView(i, "d1", 3, name, "2.0.0", "b", {}, T0 + dt.timedelta(minutes=minute))


def extra(kind: str, minute: int, **detail: Any) -> dict[str, Any]:
    return {
        "at": T0 + dt.timedelta(minutes=minute),
        "kind": kind,
        "summary": kind,
        "detail": detail,
    }


EXTRAS = [
    extra("report", 5),  # the timeline's own copy of a report: not shown twice
    extra("health", 1, version="2.0.0", boot_seconds=3.0, restarts=None),
    extra("alert", 12, alert_id=4, alert_kind="failure_spike"),
    extra("checkin", 30, version="2.0.0"),
    extra("health", -5),
]


def test_timeline_merges_reports_with_the_other_items_newest_first() -> None:
    events = [event(3, 20, "committed"), event(2, 10), event(1, 0, "assigned")]
    merged = timeline.merge(events, EXTRAS, upper=None, oldest=True)
    assert [(e.kind, e.at.minute) for e in merged] == [
        ("checkin", 30),
        ("report", 20),
        ("alert", 12),
        ("report", 10),
        ("health", 1),
        ("report", 0),
        ("health", 55),  # 11:55, the oldest
    ]
    health = merged[4]
    assert health.version == "2.0.0"
    assert dict(health.detail) == {"boot_seconds": 3.0}  # None values are left out
    assert merged[2].link == "/console/alerts?show=all"
    assert "alert_id" not in merged[2].detail
    assert merged[0].badge == "check_in"


def test_timeline_pages_show_each_item_once() -> None:
    first = timeline.merge([event(3, 20), event(2, 10)], EXTRAS, upper=None, oldest=False)
    older = timeline.merge([event(1, 0)], EXTRAS, upper=T0 + dt.timedelta(minutes=10), oldest=True)
    shown = [e.at for e in first + older if e.kind != "report"]
    expected = sorted((x["at"] for x in EXTRAS if x["kind"] != "report"), reverse=True)
    assert sorted(shown, reverse=True) == expected
    assert len(shown) == len(set(shown))
    assert [e.kind for e in older] == ["health", "report", "health"]


def test_approvers_are_offered_a_gated_next_phase_under_the_two_person_rule() -> None:
    gated = RolloutFacts("running", 0, 2, awaiting_approval=True)
    abel = deployment_actions("active", "dora", person(Role.APPROVER, name="abel"), gated)
    assert [(a.name, a.label, a.enabled) for a in abel] == [
        ("approve", "Approve the next phase", True)
    ]
    dora = deployment_actions(
        "active", "dora", person(Role.APPROVER, Role.DEPLOYER, name="dora"), gated
    )
    assert next((a.name, a.enabled) for a in dora) == ("approve", False)  # her own deployment
    # control: nothing to approve when the evaluator is not waiting for it, or when paused
    plain = RolloutFacts("running", 0, 2)
    assert deployment_actions("active", "dora", person(Role.APPROVER, name="abel"), plain) == []
    paused = RolloutFacts("paused", 0, 2, awaiting_approval=True)
    assert deployment_actions("active", "dora", person(Role.APPROVER, name="abel"), paused) == []
