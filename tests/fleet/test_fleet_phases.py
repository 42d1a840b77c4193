"""Rollout plans and the choice of devices per phase (fleet/phases.py)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otaguard.errors import RolloutPlanError
from otaguard.fleet.phases import (
    AdvanceMode,
    FleetDevice,
    Phase,
    RolloutLimits,
    RolloutPlan,
    SuccessCriteria,
    assign_phases,
    phase_members,
    phase_quota,
    spread_order,
    standard_plan,
    validate_plan,
)


def _fleet(strata: dict[tuple[str, str], int]) -> list[FleetDevice]:
    devices = []
    for (hw, version), n in strata.items():
        devices += [FleetDevice(f"{hw}-{version}-{i}", hw, version) for i in range(n)]
    return devices


def _plan(*shares: float) -> RolloutPlan:
    return validate_plan(
        RolloutPlan(phases=tuple(Phase(f"p{i}", share=s) for i, s in enumerate(shares)))
    )


# --- validation ---------------------------------------------------------------------------


def test_standard_plan_is_valid() -> None:
    plan = standard_plan(soak_seconds=600, production=True)
    assert [p.share for p in plan.phases] == [0.01, 0.10, 0.50, 1.0]
    assert [plan.needs_approval(i) for i in range(4)] == [False, True, True, True]
    assert not standard_plan().needs_approval(2)


def test_validation_lists_every_problem() -> None:
    plan = RolloutPlan(
        phases=(
            Phase("a", share=0.5, soak_seconds=-1),
            Phase("a", share=0.4, criteria=SuccessCriteria(max_failure_share=0.0, min_sample=0)),
            Phase(" "),
        ),
        limits=RolloutLimits(max_concurrent_downloads=0, max_starts_per_minute=-2, start_burst=0),
        abort_failure_share=0.01,
    )
    with pytest.raises(RolloutPlanError) as info:
        validate_plan(plan)
    problems = info.value.problems
    text = " | ".join(problems)
    for expected in (
        "names must be unique",
        "shares must increase",
        "last phase must have share 1.0",
        "abort_failure_share",
        "soak_seconds must not be negative",
        "max_failure_share must be in (0, 1)",
        "min_sample must be at least 1",
        "a phase needs a name",
        "needs a share, devices or tags",
        "max_concurrent_downloads",
        "max_starts_per_minute",
        "start_burst",
    ):
        assert expected in text, expected
    assert info.value.code == "rollout_plan"


@pytest.mark.parametrize(
    "phase",
    [
        Phase("x", share=1.5),
        Phase("x", share=0.0),
        Phase("x", share=1.0, criteria=SuccessCriteria(min_success_share=1.1)),
        Phase("x", share=1.0, criteria=SuccessCriteria(max_silent_share=1.0)),
        Phase("x", share=1.0, criteria=SuccessCriteria(alpha=0.5)),
    ],
)
def test_validation_refuses_out_of_range_values(phase: Phase) -> None:
    with pytest.raises(RolloutPlanError):
        validate_plan(RolloutPlan(phases=(phase,)))


def test_validation_refuses_an_empty_plan() -> None:
    with pytest.raises(RolloutPlanError, match="at least one phase"):
        validate_plan(RolloutPlan(phases=()))


def test_canary_phase_then_shares_is_valid() -> None:
    plan = RolloutPlan(
        phases=(
            Phase("canary", devices=("d1",), tags=("lab",), advance=AdvanceMode.MANUAL),
            Phase("all", share=1.0),
        ),
        abort_failure_share=0.2,
    )
    assert validate_plan(plan) is plan


# --- device choice ------------------------------------------------------------------------


def test_every_stratum_is_represented_in_the_first_phase() -> None:
    fleet = _fleet({("a", "1.0"): 900, ("a", "1.1"): 60, ("b", "1.0"): 30, ("c", "0.9"): 10})
    assignment = assign_phases(_plan(0.01, 0.1, 1.0), "dep-1", fleet)
    first = assignment.cohorts[0]
    assert len(first) == math.ceil(0.01 * 1000)
    strata = {(d.hardware, d.version) for d in fleet if d.id in set(first)}
    assert len(strata) == 4
    # the big stratum still gets the largest part
    counts = Counter(d.hardware + d.version for d in fleet if d.id in set(first))
    assert counts["a1.0"] == max(counts.values())


def test_shares_are_proportional_within_rounding_in_large_phases() -> None:
    fleet = _fleet({("a", "1"): 6000, ("b", "1"): 3000, ("b", "2"): 1000})
    assignment = assign_phases(_plan(0.1, 0.5, 1.0), "dep-2", fleet)
    by_id = {d.id: d for d in fleet}
    for k, share in enumerate((0.1, 0.5)):
        cohort = assignment.cohorts[k]
        counts = Counter((by_id[d].hardware, by_id[d].version) for d in cohort)
        assert counts[("a", "1")] == pytest.approx(6000 * share, abs=1)
        assert counts[("b", "1")] == pytest.approx(3000 * share, abs=1)
        assert counts[("b", "2")] == pytest.approx(1000 * share, abs=1)


def test_choice_depends_on_the_deployment_and_is_repeatable() -> None:
    fleet = _fleet({("a", "1"): 200})
    plan = _plan(0.05, 1.0)
    one = assign_phases(plan, "dep-A", fleet)
    assert assign_phases(plan, "dep-A", list(reversed(fleet))) == one
    other = assign_phases(plan, "dep-B", fleet)
    assert one.cohorts[0] != other.cohorts[0]
    assert one.cohorts[-1] == other.cohorts[-1]


def test_canaries_come_first_and_count_toward_shares() -> None:
    fleet = _fleet({("a", "1"): 100})
    fleet.append(FleetDevice("lab-1", "a", "1", frozenset({"lab"})))
    plan = validate_plan(
        RolloutPlan(
            phases=(
                Phase("canary", devices=("a-1-7", "ghost"), tags=("lab",)),
                Phase("10%", share=0.1),
                Phase("all", share=1.0),
            )
        )
    )
    assignment = assign_phases(plan, "dep", fleet)
    assert assignment.cohorts[0] == ("a-1-7", "lab-1")
    assert assignment.unknown_canaries == ("ghost",)
    assert len(assignment.cohorts[1]) == math.ceil(0.1 * 101)
    assert len(phase_members(assignment, 1)) == math.ceil(0.1 * 101) - 2
    assert len(assignment.cohorts[2]) == 101


def test_pinned_devices_keep_their_phase_when_devices_are_added() -> None:
    plan = _plan(0.02, 0.2, 1.0)
    fleet = _fleet({("a", "1"): 300, ("b", "1"): 100})
    before = assign_phases(plan, "dep", fleet)
    released = {d: i for d, i in before.phase_of.items() if i <= 1}
    grown = fleet + _fleet({("c", "1"): 50, ("a", "2"): 50})
    after = assign_phases(plan, "dep", grown, pinned=released)
    for device_id, index in released.items():
        assert after.phase_of[device_id] == index
    assert len(after.cohorts[1]) == math.ceil(0.2 * 500)
    assert set(after.cohorts[-1]) == {d.id for d in grown}


def test_pinned_ids_that_are_gone_or_out_of_range_are_ignored() -> None:
    fleet = _fleet({("a", "1"): 10})
    assignment = assign_phases(_plan(0.5, 1.0), "dep", fleet, pinned={"gone": 0, "a-1-3": 9})
    assert "gone" not in assignment.phase_of
    assert len(assignment.cohorts[0]) == 5


def test_float_noise_does_not_add_a_device() -> None:
    # 0.28 * 25 == 7.000000000000001 in binary floating point
    assignment = assign_phases(_plan(0.28, 1.0), "dep", _fleet({("a", "1"): 25}))
    assert len(assignment.cohorts[0]) == 7
    assert phase_quota(0.14, 50) == 7
    assert phase_quota(0.141, 50) == 8


def test_an_empty_fleet_has_empty_cohorts() -> None:
    assignment = assign_phases(_plan(0.5, 1.0), "dep", [])
    assert assignment.cohorts == ((), ())


strata_st = st.dictionaries(
    st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from(["1", "2", "3"])),
    st.integers(1, 60),
    min_size=1,
)
shares_st = st.lists(st.floats(0.001, 0.999), min_size=0, max_size=4).map(
    lambda xs: sorted(set(xs))
)


@settings(max_examples=120, deadline=None)
@given(strata_st, shares_st, st.text(min_size=1, max_size=8))
def test_phase_properties(
    strata: dict[tuple[str, str], int], shares: list[float], dep: str
) -> None:
    fleet = _fleet(strata)
    n = len(fleet)
    plan = _plan(*shares, 1.0)
    assignment = assign_phases(plan, dep, fleet)
    by_id = {d.id: d for d in fleet}
    for k, share in enumerate([*shares, 1.0]):
        cohort = assignment.cohorts[k]
        # shares respected exactly up to rounding up
        assert share * n - 1e-9 <= len(cohort) < share * n + 1
        # nested: a device of phase k is in every later phase
        if k:
            assert set(assignment.cohorts[k - 1]) <= set(cohort)
        # every stratum represented as soon as there is room for it
        if len(cohort) >= len(strata):
            assert {(by_id[d].hardware, by_id[d].version) for d in cohort} == set(strata)
    assert set(assignment.cohorts[-1]) == set(by_id)
    # deterministic
    assert assign_phases(plan, dep, list(reversed(fleet))) == assignment


@settings(max_examples=60, deadline=None)
@given(strata_st, st.text(max_size=8))
def test_spread_order_is_a_permutation_that_visits_every_stratum_first(
    strata: dict[tuple[str, str], int], dep: str
) -> None:
    fleet = _fleet(strata)
    order = spread_order(dep, fleet)
    assert sorted(order) == sorted(d.id for d in fleet)
    by_id = {d.id: d for d in fleet}
    head = {(by_id[d].hardware, by_id[d].version) for d in order[: len(strata)]}
    assert head == set(strata)
