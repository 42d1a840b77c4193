"""The server's database: SQLite (WAL) by default, PostgreSQL for scale.

``Store`` is the one object the server, the CLI and the tests hold: a ``Database`` (engine,
transactions, migrations: ``engine.py``) with one object per concern, and the methods callers
have always used, each handed to the concern that owns it:

- ``checkin.py``: the check-in hot path (group commit, offers);
- ``devices.py``: the device registry, tags, bootstrap API tokens;
- ``deployments.py``: deployments and their targets;
- ``reports.py``: devices' status reports;
- ``releases.py``: releases;
- ``tuf_metadata.py``: the TUF metadata rows (``SqlMetadataStore``);
- ``views.py``: the plain dataclasses every read returns.

Every public method is one transaction. Methods return plain dataclasses / dicts so callers
never hold ORM objects past their session. New code may call a concern directly
(``store.deployments.cancel_deployment(...)``); this module also re-exports the names callers
import from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Sequence
from typing import Any

from otaguard.fleet.phases import RolloutPlan
from otaguard.fleet.status import UpdateEvent
from otaguard.store.checkin import (
    CheckinOutcome,
    CheckinRequest,
    CheckIns,
    DeviceReport,
    Offer,
    Reported,
)
from otaguard.store.credentials import secret_hash
from otaguard.store.deployments import Deployments
from otaguard.store.devices import Devices
from otaguard.store.engine import (
    FIRST_REVISION,
    MIGRATION_LOCK,
    NO_WAIT,
    SQLITE_BUSY_MS,
    WRITE,
    Database,
    make_engine,
    schema_revision,
)
from otaguard.store.groups import Groups
from otaguard.store.monitoring import Monitoring
from otaguard.store.releases import Releases
from otaguard.store.reports import MAX_DETAIL_CHARS, StatusReports
from otaguard.store.rollouts import Rollouts
from otaguard.store.transfers import Transfers
from otaguard.store.tuf_metadata import SqlMetadataStore
from otaguard.store.views import DeploymentView, DeviceView, EventView, ReleaseView
from otaguard.store.wakeups import WakeupQueries

__all__ = [
    "FIRST_REVISION",
    "MAX_DETAIL_CHARS",
    "MIGRATION_LOCK",
    "NO_WAIT",
    "SQLITE_BUSY_MS",
    "WRITE",
    "CheckIns",
    "CheckinOutcome",
    "CheckinRequest",
    "Database",
    "DeploymentView",
    "Deployments",
    "DeviceReport",
    "DeviceView",
    "Devices",
    "EventView",
    "Offer",
    "ReleaseView",
    "Releases",
    "Reported",
    "SqlMetadataStore",
    "StatusReports",
    "Store",
    "make_engine",
    "schema_revision",
    "secret_hash",
]


class Store(Database):
    """The database with its concerns: each method below is the same-named method of
    ``checkins``, ``devices``, ``deployments``, ``reports`` or ``releases``."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.checkins = CheckIns(self)
        self.devices = Devices(self)
        self.deployments = Deployments(self)
        self.reports = StatusReports(self)
        self.releases = Releases(self)
        self.rollouts = Rollouts(self)  # phased rollouts: used as ``store.rollouts.*``
        self.monitoring = Monitoring(self)  # alerts, health, timelines: ``store.monitoring.*``
        self.wakeups = WakeupQueries(self)  # whom a push wake-up reaches: ``store.wakeups.*``
        self.transfers = Transfers(self)  # served bytes per deployment: ``store.transfers.*``
        self.groups = Groups(self)  # saved dynamic groups: ``store.groups.*``

    # -- check-ins (checkin.py) -------------------------------------------------------------
    def check_in(
        self,
        device_id: str,
        *,
        hardware: str = "",
        version: str | None = None,
        slot: str | None = None,
        security_version: int = 0,
        agent_version: str | None = None,
        manifest: Callable[[str | None], DeviceReport] | None = None,
    ) -> Offer | None:
        return self.checkins.check_in(
            device_id,
            hardware=hardware,
            version=version,
            slot=slot,
            security_version=security_version,
            agent_version=agent_version,
            manifest=manifest,
        )

    def check_in_many(
        self, requests: Sequence[CheckinRequest], *, wait: bool = True
    ) -> list[CheckinOutcome]:
        """``CheckIns.check_in_many``: refusals are per-request outcomes; it raises
        ``StoreBusyError`` (``wait`` False, nothing done) or a database error (whole batch
        rolled back): both mean retry."""
        return self.checkins.check_in_many(requests, wait=wait)

    # -- devices and API tokens (devices.py) ------------------------------------------------
    def add_api_token(self, name: str, token: str) -> None:
        self.devices.add_api_token(name, token)

    def check_api_token(self, token: str) -> str:
        return self.devices.check_api_token(token)

    def register_device(
        self,
        device_id: str,
        hardware: str,
        credential: str,
        tags: list[str] | None = None,
        manifest_key: str | None = None,
        accepted: bool = True,
    ) -> DeviceView:
        return self.devices.register_device(
            device_id, hardware, credential, tags, manifest_key, accepted
        )

    def authenticate_device(self, device_id: str, credential: str) -> None:
        self.devices.authenticate_device(device_id, credential)

    def get_device(self, device_id: str) -> DeviceView:
        return self.devices.get_device(device_id)

    def list_devices(
        self,
        *,
        hardware: str | None = None,
        tag: str | None = None,
        version: str | None = None,
        state: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[DeviceView], int]:
        return self.devices.list_devices(
            hardware=hardware, tag=tag, version=version, state=state, limit=limit, offset=offset
        )

    def set_device_tags(self, device_id: str, tags: list[str]) -> DeviceView:
        return self.devices.set_device_tags(device_id, tags)

    def tag_counts(self) -> list[tuple[str, int]]:
        return self.devices.tag_counts()

    # -- status reports (reports.py) --------------------------------------------------------
    def record_event(
        self,
        device_id: str,
        *,
        event: UpdateEvent,
        deployment_id: int | None,
        version: str | None,
        slot: str | None,
        detail: dict[str, Any],
        report_id: str | None = None,
    ) -> EventView:
        return self.reports.record_event(
            device_id,
            event=event,
            deployment_id=deployment_id,
            version=version,
            slot=slot,
            detail=detail,
            report_id=report_id,
        )

    def events(
        self, device_id: str, limit: int = 200, before: int | None = None
    ) -> list[EventView]:
        return self.reports.events(device_id, limit, before)

    # -- releases (releases.py) -------------------------------------------------------------
    def upsert_release(
        self,
        target_name: str,
        *,
        version: str,
        hardware: list[str],
        security_version: int,
        sha256: str,
        length: int,
        custom: dict[str, Any],
    ) -> ReleaseView:
        return self.releases.upsert_release(
            target_name,
            version=version,
            hardware=hardware,
            security_version=security_version,
            sha256=sha256,
            length=length,
            custom=custom,
        )

    def get_release(self, target_name: str) -> ReleaseView:
        return self.releases.get_release(target_name)

    def list_releases(self) -> list[ReleaseView]:
        return self.releases.list_releases()

    # -- deployments (deployments.py) -------------------------------------------------------
    def create_deployment(
        self,
        *,
        name: str,
        target_name: str,
        selector: dict[str, Any],
        created_by: str,
        production_tags: Collection[str] = (),
        plan: RolloutPlan | None = None,
        start_at: dt.datetime | None = None,
        allow_downgrade: bool = False,
    ) -> DeploymentView:
        return self.deployments.create_deployment(
            name=name,
            target_name=target_name,
            selector=selector,
            created_by=created_by,
            production_tags=production_tags,
            plan=plan,
            start_at=start_at,
            allow_downgrade=allow_downgrade,
        )

    def cancel_deployment(self, deployment_id: int) -> DeploymentView:
        return self.deployments.cancel_deployment(deployment_id)

    def retry_target(self, deployment_id: int, device_id: str) -> dict[str, Any]:
        return self.deployments.retry_target(deployment_id, device_id)

    def get_deployment(self, deployment_id: int) -> DeploymentView:
        return self.deployments.get_deployment(deployment_id)

    def deployment_state(self, deployment_id: int) -> str:
        return self.deployments.deployment_state(deployment_id)

    def list_deployments(
        self, *, state: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[DeploymentView]:
        return self.deployments.list_deployments(state=state, limit=limit, offset=offset)

    def count_deployments(self, *, state: str | None = None) -> int:
        return self.deployments.count_deployments(state=state)

    def deployment_targets(
        self,
        deployment_id: int,
        *,
        status: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        return self.deployments.deployment_targets(
            deployment_id, status=status, state=state, limit=limit, offset=offset
        )

    def count_deployment_targets(
        self, deployment_id: int, *, status: str | None = None, state: str | None = None
    ) -> int:
        return self.deployments.count_deployment_targets(deployment_id, status=status, state=state)

    def deployment_target(self, deployment_id: int, device_id: str) -> dict[str, Any] | None:
        return self.deployments.deployment_target(deployment_id, device_id)
