"""Saved dynamic groups in the database: create, read, change, delete, and evaluate.

Why a module of its own: a group is stored as its filter only, and evaluating it is the one
place where the database meets ``fleet.groups``: SQL narrows the devices by what the filter
requires (its hardware and tag values, when every condition must hold) and the pure
``fleet.groups.matches`` judges each remaining device, so the rule that decides membership is
the tested pure function, never a second copy of it in SQL. Decommissioned devices are never
members. Deployment creation calls ``evaluate`` inside its own transaction
(``store/deployments.py``), so a deployment's devices are the group's members at that moment.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, selectinload

from otaguard.errors import ConflictError, NotFoundError
from otaguard.fleet.groups import DeviceFacts, GroupFilter, matches, parse_filter
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.group_models import DeviceGroupRow
from otaguard.store.models import Device, DeviceTag
from otaguard.store.views import DeviceView


@dataclass(frozen=True)
class GroupView:
    name: str
    description: str
    filter: dict[str, Any]
    summary: str
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: DeviceGroupRow) -> GroupView:
        return cls(
            row.name,
            row.description,
            dict(row.filter),
            parse_filter(row.filter).describe(),
            row.created_by,
            row.created_at,
            row.updated_by,
            row.updated_at,
        )


def facts_of(d: Device) -> DeviceFacts:
    """What a filter sees of a device (an ORM row)."""
    return _facts(
        (d.id, d.hardware, d.current_version, d.agent_version, d.security_version,
         d.active_slot, d.update_state, d.last_seen),
        frozenset(d.tags),
    )  # fmt: skip


_COLUMNS = (
    Device.id,
    Device.hardware,
    Device.current_version,
    Device.agent_version,
    Device.security_version,
    Device.active_slot,
    Device.update_state,
    Device.last_seen,
)
#: ids per ``IN (...)`` when members are loaded (below SQLite's bound on parameters)
CHUNK = 5000


def _facts(row: Sequence[Any], tags: frozenset[str]) -> DeviceFacts:
    """What it reported (nothing before its first check-in: ``last_seen`` is None) and its tags."""
    device_id, hardware, version, agent, security, slot, state, last_seen = row
    return DeviceFacts(
        device_id,
        hardware,
        version=version,
        agent_version=agent,
        security_version=security if last_seen is not None else None,
        slot=slot,
        update_state=state,
        tags=tags,
    )


def _narrowing(group: GroupFilter) -> list[ColumnElement[bool]]:
    """SQL conditions every member must meet: not decommissioned, and the hardware and tag
    values the filter requires (a superset of the members; ``matches`` decides)."""
    cond: list[ColumnElement[bool]] = [Device.decommissioned_at.is_(None)]
    hardware = group.required("hardware")
    if hardware is not None:
        cond.append(Device.hardware.in_(hardware))
    tags = group.required("tag")
    if tags is not None:
        tag = aliased(DeviceTag)  # not correlated with a query over device_tags itself
        cond.append(exists().where(tag.device_id == Device.id, tag.tag.in_(tags)))
    return cond


def member_ids(s: Session, group: GroupFilter) -> list[str]:
    """The ids of the devices that belong to ``group`` now, sorted. Reads plain columns (two
    queries), not ORM objects: a preview of a large fleet stays cheap."""
    cond = _narrowing(group)
    tags: dict[str, set[str]] = defaultdict(set)
    tag_rows = s.execute(
        select(DeviceTag.device_id, DeviceTag.tag)
        .join(Device, Device.id == DeviceTag.device_id)
        .where(*cond)
    )
    for device_id, tag in tag_rows:
        tags[device_id].add(tag)
    rows = s.execute(select(*_COLUMNS).where(*cond).order_by(Device.id))
    return [
        row[0]
        for row in rows
        if matches(group, _facts(tuple(row), frozenset(tags.get(row[0], ()))))
    ]


def load_devices(s: Session, ids: Sequence[str]) -> list[Device]:
    """The devices with ``ids`` (tags loaded), in that order."""
    found: dict[str, Device] = {}
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        query = select(Device).where(Device.id.in_(chunk)).options(selectinload(Device.tag_rows))
        found.update((d.id, d) for d in s.scalars(query))
    return [found[i] for i in ids if i in found]


def evaluate(s: Session, group: GroupFilter) -> list[Device]:
    """The devices (not decommissioned) that belong to ``group`` now, by id."""
    return load_devices(s, member_ids(s, group))


def group_filter(s: Session, name: str) -> GroupFilter:
    """The saved filter of group ``name`` (``NotFoundError`` if there is none)."""
    row = s.get(DeviceGroupRow, name)
    if row is None:
        raise NotFoundError(f"no group {name}")
    return parse_filter(row.filter)


class Groups:
    """Saved dynamic groups on one ``Database`` (one transaction per method)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, data: Any, *, description: str, by: str) -> GroupView:
        """Save a group (the filter is checked first: ``GroupFilterError`` lists every
        problem); 409 if the name is taken."""
        group = parse_filter(data)
        with self.db.session() as s:
            if s.get(DeviceGroupRow, name) is not None:
                raise ConflictError(f"group {name} exists already")
            now = utcnow()
            row = DeviceGroupRow(
                name=name,
                description=description,
                filter=group.to_json(),
                created_by=by,
                created_at=now,
                updated_by=by,
                updated_at=now,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError as exc:  # created at the same moment elsewhere
                raise ConflictError(f"group {name} exists already") from exc
            return GroupView.of(row)

    def update(self, name: str, data: Any, *, description: str, by: str) -> GroupView:
        """Replace a group's filter and description. Deployments made from it keep the
        devices they were created with."""
        group = parse_filter(data)
        with self.db.session() as s:
            row = s.get(DeviceGroupRow, name, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no group {name}")
            row.filter = group.to_json()
            row.description = description
            row.updated_by = by
            row.updated_at = utcnow()
            s.flush()
            return GroupView.of(row)

    def delete(self, name: str) -> GroupView:
        with self.db.session() as s:
            row = s.get(DeviceGroupRow, name, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no group {name}")
            view = GroupView.of(row)
            s.delete(row)
            return view

    def get(self, name: str) -> GroupView:
        with self.db.session(write=False) as s:
            row = s.get(DeviceGroupRow, name)
            if row is None:
                raise NotFoundError(f"no group {name}")
            return GroupView.of(row)

    def list_groups(self, *, limit: int = 100, offset: int = 0) -> tuple[list[GroupView], int]:
        with self.db.session(write=False) as s:
            rows = s.scalars(
                select(DeviceGroupRow).order_by(DeviceGroupRow.name).limit(limit).offset(offset)
            )
            total = s.scalar(select(func.count()).select_from(DeviceGroupRow)) or 0
            return [GroupView.of(r) for r in rows], int(total)

    def members(
        self, name: str, *, limit: int = 100, offset: int = 0
    ) -> tuple[list[DeviceView], int]:
        """One page of the devices that belong to the group now (by id), and how many do."""
        with self.db.session(write=False) as s:
            ids = member_ids(s, group_filter(s, name))
            page = load_devices(s, ids[offset : offset + limit])
            return [DeviceView.of(d) for d in page], len(ids)
