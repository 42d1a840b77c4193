"""Plans and progress to and from JSON, strictly (fleet/plan_codec.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from otaguard.errors import RolloutPlanError
from otaguard.fleet.phases import (
    AdvanceMode,
    Phase,
    RolloutLimits,
    RolloutPlan,
    SuccessCriteria,
    standard_plan,
)
from otaguard.fleet.plan_codec import (
    plan_from_json,
    plan_to_json,
    progress_from_json,
    progress_to_json,
)
from otaguard.fleet.progress import PhaseCounts, paused, resumed, start

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_plans_round_trip_through_json_text() -> None:
    plan = RolloutPlan(
        phases=(
            Phase(
                "canary",
                devices=("d1", "d2"),
                tags=("lab",),
                advance=AdvanceMode.MANUAL,
                criteria=SuccessCriteria(min_sample=5, health_gate=True),
            ),
            Phase("half", share=0.5, soak_seconds=7200, requires_approval=True),
            Phase("all", share=1.0, soak_seconds=0),
        ),
        limits=RolloutLimits(max_concurrent_downloads=500, max_starts_per_minute=1000.0),
        production=True,
        abort_failure_share=0.25,
    )
    assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan
    assert plan_from_json(plan_to_json(standard_plan())) == standard_plan()


def test_omitted_keys_take_defaults_and_integers_are_read_as_floats() -> None:
    plan = plan_from_json(
        {"phases": [{"name": "all", "share": 1, "criteria": {"max_failure_share": 0.05}}]}
    )
    assert plan.phases[0] == Phase(
        "all", share=1.0, criteria=SuccessCriteria(max_failure_share=0.05)
    )
    assert isinstance(plan.phases[0].share, float)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "plan must be an object"),
        ({"phases": []}, "non-empty list"),
        ({"phases": [{"name": "a", "share": 1.0}], "extra": 1}, "unknown key(s) extra"),
        ({"phases": [{"name": 3, "share": 1.0}]}, "name must be a string"),
        ({"phases": [{"name": "a", "share": "all"}]}, "share must be a number"),
        ({"phases": [{"name": "a", "share": True}]}, "share must be a number"),
        ({"phases": [{"name": "a", "share": 1.0, "devices": "d1"}]}, "devices must be a list"),
        (
            {"phases": [{"name": "a", "share": 1.0, "soak_seconds": 1.5}]},
            "soak_seconds must be an integer",
        ),
        ({"phases": [{"name": "a", "share": 1.0, "advance": "later"}]}, "advance must be one of"),
        ({"phases": [{"name": "a", "share": 1.0, "requires_approval": "yes"}]}, "true or false"),
        (
            {"phases": [{"name": "a", "share": 1.0, "criteria": {"min_sample": 2.5}}]},
            "min_sample must be int",
        ),
        (
            {"phases": [{"name": "a", "share": 1.0, "criteria": {"alpha": None}}]},
            "alpha must be float",
        ),
        (
            {"phases": [{"name": "a", "share": 1.0, "criteria": {"speed": 1}}]},
            "unknown key(s) speed",
        ),
        (
            {"phases": [{"name": "a", "share": 1.0}], "limits": {"max_concurrent_downloads": 2.5}},
            "int or null",
        ),
        (
            {"phases": [{"name": "a", "share": 1.0}], "production": 1},
            "production must be true or false",
        ),
        ({"phases": [{"name": "a", "share": 0.5}]}, "last phase must have share 1.0"),
    ],
)
def test_bad_plans_are_refused_with_the_reason(data: object, problem: str) -> None:
    with pytest.raises(RolloutPlanError) as info:
        plan_from_json(data)
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_every_problem_is_listed_at_once() -> None:
    data = {
        "phases": [{"name": 1, "share": "x"}, {"name": "b", "soak_seconds": "1h"}],
        "production": 0,
    }
    with pytest.raises(RolloutPlanError) as info:
        plan_from_json(data)
    assert len(info.value.problems) == 4


def test_progress_round_trip_and_damage() -> None:
    progress = resumed(paused(start(T0), "x"), [PhaseCounts(succeeded=3, failed=1)])
    stored = json.loads(json.dumps(progress_to_json(progress)))
    assert progress_from_json(stored) == progress
    del stored["status"]
    with pytest.raises(RolloutPlanError, match="damaged"):
        progress_from_json(stored)
    with pytest.raises(RolloutPlanError, match="damaged"):
        progress_from_json({**progress_to_json(progress), "status": "exploded"})
