"""Saved dynamic groups in the store, on SQLite and PostgreSQL: the SQL narrowing (hardware and
tags the filter requires) never changes who belongs, members page in id order, and a
deployment from a group holds the members at its creation."""

from __future__ import annotations

import pytest

from otaguard.errors import ConflictError, GroupFilterError, NotFoundError
from otaguard.fleet.groups import members, parse_filter
from otaguard.store.database import Store
from otaguard.store.groups import facts_of, load_devices, member_ids

from .helpers import HW, add_release

FILTERS = [
    {"conditions": [{"attribute": "hardware", "op": "eq", "value": HW}]},
    {"conditions": [{"attribute": "hardware", "op": "in", "value": [HW, "board-b"]},
                    {"attribute": "tag", "op": "has_all", "value": ["eu", "lab"]}]},
    {"conditions": [{"attribute": "tag", "op": "has", "value": "eu"},
                    {"attribute": "version", "op": "ge", "value": "1.5"}]},
    {"match": "any", "conditions": [{"attribute": "tag", "op": "has", "value": "lab"},
                                    {"attribute": "version", "op": "exists", "value": False}]},
    {"conditions": [{"attribute": "tag", "op": "has_none", "value": ["eu"]}]},
]  # fmt: skip


def fleet(store: Store) -> None:
    for i in range(12):
        tags = [t for t, on in (("eu", i % 2 == 0), ("lab", i % 3 == 0)) if on]
        hardware = (HW, "board-b")[i % 4 == 3]
        store.register_device(f"d{i:02d}", hardware, f"secret-{i}", tags)
        if i < 9:
            store.check_in(f"d{i:02d}", hardware=hardware, version=("1.0", "1.5", "2.0")[i % 3])


@pytest.mark.parametrize("data", FILTERS)
def test_sql_narrowing_never_changes_who_belongs(store: Store, data: dict[str, object]) -> None:
    fleet(store)
    group = parse_filter(data)
    with store.session(write=False) as s:
        everyone = load_devices(s, [f"d{i:02d}" for i in range(12)])
        expected = members(group, [facts_of(d) for d in everyone])
        assert member_ids(s, group) == expected
    assert expected  # each filter picks someone


def test_crud_members_and_a_deployment(store: Store) -> None:
    fleet(store)
    add_release(store, "3.0")
    store.groups.create("eu", FILTERS[2], description="eu, 1.5+", by="alice")
    with pytest.raises(ConflictError):
        store.groups.create("eu", FILTERS[0], description="", by="alice")
    with pytest.raises(GroupFilterError):
        store.groups.update("eu", {"conditions": [{"attribute": "x"}]}, description="", by="bob")
    page, total = store.groups.members("eu", limit=2, offset=1)
    assert (total, [d.id for d in page]) == (3, ["d04", "d08"])
    dep = store.create_deployment(
        name="g", target_name=f"{HW}/firmware-3.0.img", selector={"group": "eu"}, created_by="a"
    )
    assert sorted(t["device_id"] for t in store.deployment_targets(dep.id)) == ["d02", "d04", "d08"]
    changed = store.groups.update("eu", FILTERS[0], description="all A", by="bob")
    assert (changed.updated_by, changed.created_by) == ("bob", "alice")
    assert store.deployment_targets(dep.id)[0]["device_id"] == "d02"  # unchanged
    assert [g.name for g in store.groups.list_groups()[0]] == ["eu"]
    store.groups.delete("eu")
    with pytest.raises(NotFoundError):
        store.groups.get("eu")
