"""What the store's read methods return: frozen dataclasses copied out of ORM rows.

Why: a caller never holds an ORM object past its transaction (no lazy loads on a closed
session, no accidental writes), and the server's routes and the CLI depend on these plain
shapes, not on the tables. Each view is made by ``View.of(row)`` inside the transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from otaguard.fleet.compatibility import Exclusion
from otaguard.store.models import Device, Release, StatusEvent


@dataclass(frozen=True)
class DeviceView:
    id: str
    hardware: str
    tags: list[str]
    current_version: str | None
    active_slot: str | None
    security_version: int
    agent_version: str | None
    update_state: str
    last_seen: dt.datetime | None
    #: the active slot's image sha256 its last signed manifest reported (a delta's source)
    image_sha256: str | None = None

    @classmethod
    def of(cls, d: Device) -> DeviceView:
        return cls(
            d.id,
            d.hardware,
            list(d.tags or []),
            d.current_version,
            d.active_slot,
            d.security_version,
            d.agent_version,
            d.update_state,
            d.last_seen,
            d.image_sha256,
        )


@dataclass(frozen=True)
class ReleaseView:
    target_name: str
    version: str
    hardware: list[str]
    security_version: int
    sha256: str
    length: int
    custom: dict[str, Any]

    @classmethod
    def of(cls, r: Release) -> ReleaseView:
        return cls(
            r.target_name,
            r.version,
            list(r.hardware),
            r.security_version,
            r.sha256,
            r.length,
            dict(r.custom or {}),
        )


@dataclass(frozen=True)
class DeploymentView:
    id: int
    name: str
    target_name: str
    selector: dict[str, Any]
    state: str
    created_by: str
    created_at: dt.datetime
    counts: dict[str, int]
    #: the devices by their last report for it (``fleet.status.DeviceState`` values)
    states: dict[str, int] = field(default_factory=dict)
    #: devices the selector picked that were left out, and why (set on creation only)
    excluded: tuple[Exclusion, ...] = ()
    #: how it ended (``fleet.progress.Outcome``), once it did
    outcome: str | None = None
    #: a phased rollout's status (None: no plan, every device at once)
    rollout_status: str | None = None
    start_at: dt.datetime | None = None
    allow_downgrade: bool = False
    #: the fleet bytes view (``store/transfers.py``: bytes sent, what full images would have
    #: needed, delta devices)
    transfer: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class EventView:
    id: int
    device_id: str
    deployment_id: int | None
    event: str
    version: str | None
    slot: str | None
    detail: dict[str, Any]
    created_at: dt.datetime
    report_id: str | None = None

    @classmethod
    def of(cls, e: StatusEvent) -> EventView:
        return cls(
            e.id,
            e.device_id,
            e.deployment_id,
            e.event,
            e.version,
            e.slot,
            dict(e.detail or {}),
            e.created_at,
            e.report_id,
        )
