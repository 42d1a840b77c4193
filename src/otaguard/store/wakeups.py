"""Which devices a push wake-up should reach: read-only queries for the MQTT publisher.

Why a module of its own: the publisher (``server/push.py``) runs on its own thread, off the
request and check-in paths; it turns "deployment D changed" into device ids here, with the
same rule the check-in offers by (``store/checkin._released``): a pending target that is
admitted, of an active deployment whose start time has come and whose rollout (if any) is
running, on a device accepted and not decommissioned. A wake-up the rule gets wrong costs one
early check-in that finds nothing; one it misses costs the wait until the next poll.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from otaguard.fleet.progress import RolloutStatus
from otaguard.fleet.status import DeploymentState, TargetStatus
from otaguard.store.base import utcnow
from otaguard.store.engine import Database
from otaguard.store.models import Deployment, DeploymentTarget, Device


class WakeupQueries:
    """Read-only; one short transaction per call."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def offered(self, deployment_id: int, now: dt.datetime | None = None) -> list[str]:
        """Devices deployment ``deployment_id`` offers its release to now."""
        now = now or utcnow()
        t, d, dev = DeploymentTarget, Deployment, Device
        query = (
            select(t.device_id)
            .join(d, d.id == t.deployment_id)
            .join(dev, dev.id == t.device_id)
            .where(
                d.id == deployment_id,
                d.state == DeploymentState.ACTIVE.value,
                (d.start_at.is_(None)) | (d.start_at <= now),
                (d.rollout_status.is_(None)) | (d.rollout_status == RolloutStatus.RUNNING.value),
                t.status == TargetStatus.PENDING.value,
                t.admitted.is_(True),
                dev.accepted.is_(True),
                dev.decommissioned_at.is_(None),
            )
            .order_by(t.device_id)
        )
        with self.db.session(write=False) as s:
            return list(s.scalars(query))

    def cancelled_under_way(self, deployment_id: int) -> list[str]:
        """Devices whose target in ``deployment_id`` was cancelled after they had started it
        (they should learn to skip it, and may be offered an older active deployment)."""
        t = DeploymentTarget
        query = (
            select(t.device_id)
            .where(
                t.deployment_id == deployment_id,
                t.status == TargetStatus.CANCELLED.value,
                t.last_event.is_not(None),
            )
            .order_by(t.device_id)
        )
        with self.db.session(write=False) as s:
            return list(s.scalars(query))

    def started_between(self, since: dt.datetime, until: dt.datetime) -> list[int]:
        """Active deployments whose scheduled start fell in ``(since, until]``."""
        d = Deployment
        query = (
            select(d.id)
            .where(
                d.state == DeploymentState.ACTIVE.value,
                d.start_at.is_not(None),
                d.start_at > since,
                d.start_at <= until,
            )
            .order_by(d.id)
        )
        with self.db.session(write=False) as s:
            return list(s.scalars(query))
