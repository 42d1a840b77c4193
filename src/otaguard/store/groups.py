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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

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
    """What a filter sees of a device: what it reported (nothing before its first check-in)
    and its tags."""
    reported = d.last_seen is not None
    return DeviceFacts(
        d.id,
        d.hardware,
        version=d.current_version,
        agent_version=d.agent_version,
        security_version=d.security_version if reported else None,
        slot=d.active_slot,
        update_state=d.update_state,
        tags=frozenset(d.tags),
    )


def evaluate(s: Session, group: GroupFilter) -> list[Device]:
    """The devices (not decommissioned) that belong to ``group`` now, by id."""
    cond: list[ColumnElement[bool]] = [Device.decommissioned_at.is_(None)]
    hardware = group.required("hardware")
    if hardware is not None:
        cond.append(Device.hardware.in_(hardware))
    tags = group.required("tag")
    if tags is not None:
        cond.append(exists().where(DeviceTag.device_id == Device.id, DeviceTag.tag.in_(tags)))
    rows = s.scalars(
        select(Device).where(*cond).options(selectinload(Device.tag_rows)).order_by(Device.id)
    )
    return [d for d in rows if matches(group, facts_of(d))]


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
            found = evaluate(s, group_filter(s, name))
            return [DeviceView.of(d) for d in found[offset : offset + limit]], len(found)
