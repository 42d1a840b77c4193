"""SQLAlchemy models of what phased rollouts and fleet monitoring keep: alerts raised by the
anomaly rules and the rollout evaluator, and the health reports devices send after an update.

A module of its own (on the same ``Base``, imported by ``schema.py``) because these tables grow
with monitoring, not with the fleet's configuration: they are read by the periodic evaluator
and the operator API, never by the check-in hot path.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from otaguard.store.base import Base, UtcDateTime, utcnow


class AlertRow(Base):
    """One alert (``fleet.alerts.Alert``), raised once per ``key`` and updated when seen again."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(String(255), index=True)
    message: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acknowledged_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime(), nullable=True)


class HealthReportRow(Base):
    """What one device reported about its health after an update (``fleet.health``)."""

    __tablename__ = "health_reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    boot_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    restarts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    check_passed: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
