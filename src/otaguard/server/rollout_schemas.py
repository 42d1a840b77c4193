"""Request and response bodies of the rollout, alert, health and timeline routes
(``server/routes/rollouts.py``, ``routes/monitoring.py``); bounded like every other body."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, Field

from otaguard.server.schemas import Strict

MetricName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class NoteIn(Strict):
    note: str = Field(default="", max_length=1024, description="Why (kept in the audit log)")


class AdvanceIn(Strict):
    force: bool = Field(
        default=False,
        description="Enter the next phase now, skipping its gates (not the approval)",
    )


class PhaseOut(BaseModel):
    name: str
    share: float | None
    soak_seconds: int
    released: bool
    counts: dict[str, int]


class RolloutOut(BaseModel):
    deployment_id: int
    state: str
    outcome: str | None
    status: str
    phase: int
    phase_started_at: dt.datetime
    note: str
    start_at: dt.datetime | None
    last_decision: dict[str, Any] | None
    phases: list[PhaseOut]


class EvaluationOut(BaseModel):
    action: str
    reason: str
    message: str
    admitted: int


class AlertOut(BaseModel):
    id: int
    kind: str
    severity: str
    subject: str
    message: str
    evidence: dict[str, Any]
    count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None


class AlertPage(BaseModel):
    items: list[AlertOut]
    total: int
    limit: int
    offset: int


class HealthIn(Strict):
    """What a device reports after an update, for the health gate (``fleet/health.py``)."""

    version: str | None = Field(default=None, max_length=64)
    boot_seconds: float | None = Field(default=None, ge=0, le=86_400)
    restarts: int | None = Field(default=None, ge=0, le=1_000_000)
    check_passed: bool | None = None
    metrics: dict[MetricName, Annotated[float, Field(ge=-1e12, le=1e12)]] = Field(
        default_factory=dict, max_length=16
    )


class HealthOut(BaseModel):
    id: int


class TimelineItem(BaseModel):
    at: dt.datetime
    kind: str
    summary: str
    detail: dict[str, Any]


class AcceptanceIn(Strict):
    accepted: bool


class DeviceStatusOut(BaseModel):
    device_id: str
    accepted: bool
    decommissioned_at: dt.datetime | None = None
    revoked: list[str] = Field(default_factory=list)
