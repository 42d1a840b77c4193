"""Saved dynamic groups' filters (``fleet/groups.py``): every attribute x every operator it
accepts, missing values, PEP 440 ordering, match all/any, and every way a filter is refused."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otaguard.errors import GroupFilterError
from otaguard.fleet.groups import (
    ATTRIBUTES,
    MAX_CONDITIONS,
    OPERATORS,
    DeviceFacts,
    Kind,
    matches,
    members,
    parse_filter,
)

DEV = DeviceFacts(
    "d1",
    "sim-board",
    version="1.10.0",
    agent_version="0.1.0",
    security_version=3,
    slot="a",
    update_state="committed",
    tags=frozenset({"eu", "canary"}),
)
BARE = DeviceFacts("d0", "sim-board")  # never reported anything but its hardware


def one(attribute: str, op: str, value: Any, device: DeviceFacts = DEV) -> bool:
    f = parse_filter({"conditions": [{"attribute": attribute, "op": op, "value": value}]})
    return matches(f, device)


# (attribute, op, value, verdict on DEV, verdict on BARE)
CASES = [
    ("hardware", "eq", "sim-board", True, True),
    ("hardware", "eq", "other", False, False),
    ("hardware", "ne", "other", True, True),
    ("hardware", "ne", "sim-board", False, False),
    ("hardware", "in", ["x", "sim-board"], True, True),
    ("hardware", "not_in", ["sim-board"], False, False),
    ("hardware", "prefix", "sim-", True, True),
    ("hardware", "prefix", "board", False, False),
    ("hardware", "exists", True, True, True),
    ("slot", "eq", "a", True, False),
    ("slot", "ne", "b", True, True),  # missing: not equal to anything
    ("slot", "in", ["a", "b"], True, False),
    ("slot", "not_in", ["b"], True, True),
    ("slot", "prefix", "a", True, False),
    ("slot", "exists", True, True, False),
    ("slot", "exists", False, False, True),
    ("update_state", "eq", "committed", True, False),
    ("update_state", "in", ["failed", "rolled_back"], False, False),
    ("version", "eq", "1.10.0", True, False),
    ("version", "ne", "1.10.0", False, True),
    ("version", "lt", "1.9.0", False, False),  # 1.10 > 1.9 (PEP 440, not text order)
    ("version", "gt", "1.9.0", True, False),
    ("version", "le", "1.10.0", True, False),
    ("version", "ge", "1.10", True, False),  # 1.10 == 1.10.0
    ("version", "lt", "2.0", True, False),
    ("version", "in", ["1.10.0", "2.0.0"], True, False),
    ("version", "not_in", ["1.10.0"], False, True),
    ("version", "exists", False, False, True),
    ("agent_version", "ge", "0.1.0", True, False),
    ("agent_version", "lt", "0.1.0", False, False),
    ("security_version", "eq", 3, True, False),
    ("security_version", "ne", 3, False, True),
    ("security_version", "lt", 4, True, False),
    ("security_version", "le", 3, True, False),
    ("security_version", "gt", 3, False, False),
    ("security_version", "ge", 3, True, False),
    ("security_version", "in", [1, 3], True, False),
    ("security_version", "not_in", [1, 2], True, True),
    ("security_version", "exists", True, True, False),
    ("tag", "has", "eu", True, False),
    ("tag", "has", "us", False, False),
    ("tag", "has_any", ["us", "canary"], True, False),
    ("tag", "has_any", ["us"], False, False),
    ("tag", "has_all", ["eu", "canary"], True, False),
    ("tag", "has_all", ["eu", "us"], False, False),
    ("tag", "has_none", ["us"], True, True),
    ("tag", "has_none", ["eu", "us"], False, True),
]


@pytest.mark.parametrize(("attribute", "op", "value", "on_dev", "on_bare"), CASES)
def test_each_condition(attribute: str, op: str, value: Any, on_dev: bool, on_bare: bool) -> None:
    assert one(attribute, op, value) is on_dev
    assert one(attribute, op, value, BARE) is on_bare


def test_every_attribute_and_operator_is_covered() -> None:
    covered = {(a, o) for a, o, *_ in CASES}
    expected = {(a, o) for a, kind in ATTRIBUTES.items() for o in OPERATORS[kind]}
    # eq/ne/in/... behave the same on every string attribute: one string attribute with all
    # operators, the others with some, is enough; every (kind, op) pair is covered.
    kinds = {(ATTRIBUTES[a], o) for a, o in covered}
    assert kinds == {(ATTRIBUTES[a], o) for a, o in expected}


def test_a_version_that_does_not_parse_never_orders() -> None:
    odd = DeviceFacts("d2", "sim-board", version="nightly-42")
    assert not one("version", "lt", "9.0", odd)
    assert not one("version", "ge", "0", odd)
    assert one("version", "eq", "nightly-42", odd)  # equality still works on the text
    assert one("version", "ne", "1.0", odd)


def test_match_all_and_any() -> None:
    conds = [
        {"attribute": "hardware", "op": "eq", "value": "sim-board"},
        {"attribute": "tag", "op": "has", "value": "us"},
    ]
    assert not matches(parse_filter({"conditions": conds}), DEV)
    assert matches(parse_filter({"match": "any", "conditions": conds}), DEV)
    assert not matches(parse_filter({"match": "any", "conditions": conds[1:]}), DEV)


def test_members_keep_order_and_round_trip_json() -> None:
    data = {
        "match": "all",
        "conditions": [
            {"attribute": "version", "op": "lt", "value": "2.0"},
            {"attribute": "tag", "op": "has_any", "value": ["eu", "us"]},
        ],
    }
    f = parse_filter(data)
    assert f.to_json() == data
    assert parse_filter(f.to_json()) == f
    fleet = [
        DeviceFacts("z", "sim-board", version="1.0", tags=frozenset({"us"})),
        DeviceFacts("a", "sim-board", version="2.0", tags=frozenset({"us"})),
        DeviceFacts("m", "sim-board", version="1.5", tags=frozenset({"eu"})),
        DeviceFacts("b", "sim-board", version=None, tags=frozenset({"eu"})),
    ]
    assert members(f, fleet) == ["z", "m"]
    assert f.describe() == "version < 2.0 and tag has any eu, us"


def test_required_values_narrow_soundly() -> None:
    f = parse_filter(
        {
            "conditions": [
                {"attribute": "hardware", "op": "in", "value": ["a", "b"]},
                {"attribute": "tag", "op": "has_all", "value": ["eu", "lab"]},
            ]
        }
    )
    assert f.required("hardware") == ("a", "b")
    assert f.required("tag") == ("eu",)
    assert f.required("version") is None
    anyf = parse_filter({"match": "any", "conditions": f.to_json()["conditions"]})
    assert anyf.required("hardware") is None  # "any": no single condition must hold


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (None, "must be an object"),
        ({"conditions": []}, "non-empty list"),
        ({"conditions": [{"attribute": "colour", "op": "eq", "value": "x"}]}, "unknown attribute"),
        ({"conditions": [{"attribute": "tag", "op": "eq", "value": "x"}]}, "does not apply to tag"),
        ({"conditions": [{"attribute": "hardware", "op": "lt", "value": "x"}]}, "does not apply"),
        ({"conditions": [{"attribute": "version", "op": "lt", "value": "latest"}]}, "PEP 440"),
        ({"conditions": [{"attribute": "security_version", "op": "eq", "value": "3"}]}, "whole"),
        ({"conditions": [{"attribute": "security_version", "op": "eq", "value": True}]}, "whole"),
        ({"conditions": [{"attribute": "hardware", "op": "in", "value": "x"}]}, "list of 1"),
        ({"conditions": [{"attribute": "hardware", "op": "in", "value": []}]}, "list of 1"),
        ({"conditions": [{"attribute": "hardware", "op": "eq", "value": ""}]}, "string of 1"),
        ({"conditions": [{"attribute": "slot", "op": "exists", "value": "yes"}]}, "true or false"),
        ({"conditions": [{"attribute": "slot", "op": "eq", "value": "a", "x": 1}]}, "unknown fi"),
        (
            {"match": "some", "conditions": [{"attribute": "slot", "op": "eq", "value": "a"}]},
            "match",
        ),
        ({"conditions": [{"attribute": "slot", "op": "eq", "value": "a"}], "y": 1}, "unknown fil"),
        ({"conditions": ["slot=a"]}, "must be an object"),
    ],
)
def test_bad_filters_are_refused_naming_the_problem(data: Any, problem: str) -> None:
    with pytest.raises(GroupFilterError, match=problem):
        parse_filter(data)


def test_every_problem_is_listed_at_once() -> None:
    bad = {"attribute": "colour", "op": "eq", "value": "x"}
    with pytest.raises(GroupFilterError) as info:
        parse_filter({"match": "some", "conditions": [bad, bad]})
    assert len(info.value.problems) == 3
    too_many = [{"attribute": "slot", "op": "eq", "value": "a"}] * (MAX_CONDITIONS + 1)
    with pytest.raises(GroupFilterError, match="at most"):
        parse_filter({"conditions": too_many})


facts = st.builds(
    DeviceFacts,
    device_id=st.text(min_size=1, max_size=5),
    hardware=st.sampled_from(["a", "b"]),
    version=st.one_of(st.none(), st.sampled_from(["1.0", "1.2", "2.0", "x"])),
    security_version=st.one_of(st.none(), st.integers(0, 3)),
    tags=st.frozensets(st.sampled_from(["eu", "us", "lab"])),
)


@given(facts)
def test_negations_are_complements_when_the_value_is_reported(device: DeviceFacts) -> None:
    """``ne`` is ``not eq``, ``not_in`` is ``not in``, ``has_none`` is ``not has_any``; for
    versions that parse, ``lt`` is ``not ge`` and ``gt`` is ``not le``."""
    for value in ("1.0", "2.0"):
        assert one("version", "ne", value, device) is not one("version", "eq", value, device)
        if device.version not in (None, "x"):
            assert one("version", "lt", value, device) is not one("version", "ge", value, device)
            assert one("version", "gt", value, device) is not one("version", "le", value, device)
    assert one("hardware", "not_in", ["a"], device) is not one("hardware", "in", ["a"], device)
    for tags in (["eu"], ["eu", "us"]):
        assert one("tag", "has_none", tags, device) is not one("tag", "has_any", tags, device)


@given(st.lists(facts, max_size=8, unique_by=lambda d: d.device_id))
def test_any_is_the_union_and_all_the_intersection(fleet: list[DeviceFacts]) -> None:
    a = {"attribute": "hardware", "op": "eq", "value": "a"}
    b = {"attribute": "tag", "op": "has", "value": "eu"}
    only_a = set(members(parse_filter({"conditions": [a]}), fleet))
    only_b = set(members(parse_filter({"conditions": [b]}), fleet))
    both = set(members(parse_filter({"conditions": [a, b]}), fleet))
    either = set(members(parse_filter({"match": "any", "conditions": [a, b]}), fleet))
    assert both == only_a & only_b
    assert either == only_a | only_b


def test_every_kind_has_operators() -> None:
    assert set(OPERATORS) == set(Kind)
    for attribute, op in itertools.product(ATTRIBUTES, ["eq"]):
        if ATTRIBUTES[attribute] is not Kind.TAGS:
            assert op in OPERATORS[ATTRIBUTES[attribute]]
