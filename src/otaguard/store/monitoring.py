"""Monitoring records: alerts (raised once per key, acknowledged by operators), devices'
health reports, and a device's timeline.

Why a module of its own: these are written by the periodic evaluator and the health endpoint
and read by operators, never on the check-in hot path; bounded in size on the way in (a
device's report cannot grow the table by more than one small row).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from otaguard.errors import ConflictError, NotFoundError
from otaguard.fleet.alerts import Alert
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.models import Device, StatusEvent
from otaguard.store.rollout_models import AlertRow, HealthReportRow

MAX_METRICS = 16
MAX_METRIC_NAME = 64


@dataclass(frozen=True)
class AlertView:
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

    @classmethod
    def of(cls, a: AlertRow) -> AlertView:
        return cls(
            a.id,
            a.kind,
            a.severity,
            a.subject,
            a.message,
            dict(a.evidence or {}),
            a.count,
            a.first_seen,
            a.last_seen,
            a.acknowledged_by,
            a.acknowledged_at,
        )


def _evidence(alert: Alert) -> dict[str, Any]:
    return {str(k)[:64]: v for k, v in list(alert.evidence.items())[:32]}


class Monitoring:
    """Alerts, health reports and timelines on one ``Database``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def raise_alerts(self, alerts: Iterable[Alert]) -> list[AlertView]:
        """Store alerts, once per ``key``: a known key is updated (count, last seen, message,
        evidence; an acknowledged alert stays acknowledged). Returns only the new ones."""
        new: list[AlertView] = []
        for alert in alerts:
            try:
                view = self._raise(alert)
            except IntegrityError:  # raised at the same moment by another process
                view = self._raise(alert)
            if view is not None:
                new.append(view)
        return new

    def _raise(self, alert: Alert) -> AlertView | None:
        now = utcnow()
        with self.db.session() as s:
            row = s.scalars(select(AlertRow).where(AlertRow.key == alert.key)).first()
            if row is not None:
                row.count += 1
                row.last_seen = now
                row.message = alert.message
                row.severity = alert.severity.value
                row.evidence = _evidence(alert)
                return None
            row = AlertRow(
                key=alert.key[:255],
                kind=alert.kind.value,
                severity=alert.severity.value,
                subject=alert.subject[:255],
                message=alert.message,
                evidence=_evidence(alert),
                count=1,
                first_seen=now,
                last_seen=now,
            )
            s.add(row)
            s.flush()
            return AlertView.of(row)

    def alerts(
        self,
        *,
        kind: str | None = None,
        acknowledged: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[AlertView], int]:
        """A page of alerts, newest first, and how many match."""
        conds = []
        if kind is not None:
            conds.append(AlertRow.kind == kind)
        if acknowledged is not None:
            conds.append(
                AlertRow.acknowledged_at.is_not(None)
                if acknowledged
                else AlertRow.acknowledged_at.is_(None)
            )
        with self.db.session(write=False) as s:
            rows = s.scalars(
                select(AlertRow)
                .where(*conds)
                .order_by(AlertRow.id.desc())
                .offset(offset)
                .limit(limit)
            )
            total = int(s.scalar(select(func.count()).select_from(AlertRow).where(*conds)) or 0)
            return [AlertView.of(r) for r in rows], total

    def alert_counts(self) -> dict[str, int]:
        """Alerts by kind (for ``/metrics``)."""
        with self.db.session(write=False) as s:
            q = select(AlertRow.kind, func.count()).group_by(AlertRow.kind)
            return {str(k): int(n) for k, n in s.execute(q)}

    def acknowledge(self, alert_id: int, by: str) -> AlertView:
        with self.db.session() as s:
            row = s.get(AlertRow, alert_id, with_for_update=True)
            if row is None:
                raise NotFoundError(f"no alert {alert_id}")
            if row.acknowledged_at is not None:
                raise ConflictError(f"alert {alert_id} was acknowledged by {row.acknowledged_by}")
            row.acknowledged_by = by
            row.acknowledged_at = utcnow()
            s.flush()
            return AlertView.of(row)

    def record_health(
        self,
        device_id: str,
        *,
        version: str | None,
        boot_seconds: float | None,
        restarts: int | None,
        check_passed: bool | None,
        metrics: Mapping[str, float],
    ) -> int:
        """Store one health report (metrics already bounded by the API); returns its id."""
        with self.db.session() as s:
            if s.get(Device, device_id) is None:
                raise NotFoundError(f"no device {device_id}")
            row = HealthReportRow(
                device_id=device_id,
                version=version,
                boot_seconds=boot_seconds,
                restarts=restarts,
                check_passed=check_passed,
                metrics={
                    k[:MAX_METRIC_NAME]: float(v) for k, v in list(metrics.items())[:MAX_METRICS]
                },
            )
            s.add(row)
            s.flush()
            return row.id

    def timeline(self, device_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """The device's recent history, newest last: status reports, health reports, alerts
        about it, and its last check-in."""
        with self.db.session(write=False) as s:
            device = s.get(Device, device_id)
            if device is None:
                raise NotFoundError(f"no device {device_id}")
            items: list[dict[str, Any]] = []
            for e in s.scalars(
                select(StatusEvent)
                .where(StatusEvent.device_id == device_id)
                .order_by(StatusEvent.id.desc())
                .limit(limit)
            ):
                items.append(
                    {
                        "at": e.created_at,
                        "kind": "report",
                        "summary": e.event,
                        "detail": {"deployment_id": e.deployment_id, "version": e.version},
                    }
                )
            for h in s.scalars(
                select(HealthReportRow)
                .where(HealthReportRow.device_id == device_id)
                .order_by(HealthReportRow.id.desc())
                .limit(limit)
            ):
                items.append(
                    {
                        "at": h.created_at,
                        "kind": "health",
                        "summary": "health check "
                        + {True: "passed", False: "failed", None: "not run"}[h.check_passed],
                        "detail": {
                            "version": h.version,
                            "boot_seconds": h.boot_seconds,
                            "restarts": h.restarts,
                        },
                    }
                )
            for a in s.scalars(
                select(AlertRow)
                .where(AlertRow.subject == f"device:{device_id}")
                .order_by(AlertRow.id.desc())
                .limit(limit)
            ):
                items.append(
                    {
                        "at": a.last_seen,
                        "kind": "alert",
                        "summary": a.message,
                        "detail": {"alert_id": a.id, "alert_kind": a.kind},
                    }
                )
            if device.last_seen is not None:
                items.append(
                    {
                        "at": device.last_seen,
                        "kind": "checkin",
                        "summary": "last check-in",
                        "detail": {"version": device.current_version},
                    }
                )
        items.sort(key=lambda i: i["at"])
        return items[-limit:]

    def set_accepted(self, device_id: str, accepted: bool) -> None:
        with self.db.session() as s:
            device = s.get(Device, device_id, with_for_update=True)
            if device is None:
                raise NotFoundError(f"no device {device_id}")
            device.accepted = accepted

    def decommission(self, device_id: str) -> dt.datetime:
        """Retire a device: it is never offered anything again (its certificates are revoked
        by the caller, through the device CA)."""
        with self.db.session() as s:
            device = s.get(Device, device_id, with_for_update=True)
            if device is None:
                raise NotFoundError(f"no device {device_id}")
            if device.decommissioned_at is not None:
                raise ConflictError(f"device {device_id} is already decommissioned")
            device.decommissioned_at = utcnow()
            device.accepted = False
            return device.decommissioned_at
