"""The check-in hot path: many devices' check-ins in one transaction (the server's group
commit).

Why a module of its own: this is the statement mix every device runs every poll interval, so
it is written in SQLAlchemy Core with statements built once at import (no ORM unit of work, no
statement compilation per request), a fixed number of round trips per *batch* (lock the
devices, record the reports in one executemany, find the offers, raise the assignment
counters), and nothing per request but Python. The replay check (``is_replay``: a signed
manifest must come after the device's last accepted one, by its sequence number, or by its
clock for agents from before sequences) compares against the locked row already read. Keep it
that way: no extra query or call per request inside ``CheckIns.check_in_many``.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Row, Table, bindparam, func, select, update

from otaguard.errors import (
    AuthError,
    CompatibilityError,
    NotFoundError,
    OTAGuardError,
)
from otaguard.fleet.integrity import ManifestObservation
from otaguard.fleet.progress import RolloutStatus
from otaguard.fleet.status import DeploymentState, TargetStatus, is_offered
from otaguard.store.base import UtcDateTime, utcnow
from otaguard.store.credentials import secret_hash
from otaguard.store.engine import Database
from otaguard.store.models import Deployment, DeploymentTarget, Device
from otaguard.store.replay import ManifestMark, is_replay, replay_error, replay_seen


class DeviceReport(Protocol):
    """What a device reports at check-in (a verified version manifest)."""

    @property
    def hardware(self) -> str: ...
    @property
    def version(self) -> str | None: ...
    @property
    def slot(self) -> str | None: ...
    @property
    def security_version(self) -> int: ...
    @property
    def agent_version(self) -> str | None: ...
    @property
    def nonce(self) -> str | None: ...
    @property
    def time(self) -> dt.datetime | None: ...
    @property
    def image_sha256(self) -> str | None: ...
    @property
    def sequence(self) -> int | None: ...


@dataclass(frozen=True)
class Offer:
    """What the director should sign for a checking-in device."""

    deployment_id: int
    target_name: str
    counter: int
    #: the active slot's image the device's signed manifest reported (a delta's source)
    image_sha256: str | None = None


@dataclass(frozen=True)
class Reported:
    """A report given directly (tests, tools): a ``DeviceReport`` without a signature."""

    hardware: str
    version: str | None
    slot: str | None
    security_version: int
    agent_version: str | None
    nonce: str | None = None
    time: dt.datetime | None = None  # unsigned: no replay check
    image_sha256: str | None = None
    sequence: int | None = None


@dataclass(frozen=True)
class CheckinRequest:
    """One device's check-in, as ``Store.check_in_many`` takes it.

    ``report`` is called with the device's registered manifest key (inside the transaction) and
    returns the verified report, or raises an ``OTAGuardError`` to refuse the check-in.
    ``credential``: a bearer credential still to check against the stored hash; None when the
    caller has proven the device's identity already (a verified client certificate)."""

    device_id: str
    report: Callable[[str | None], DeviceReport]
    credential: str | None = None


@dataclass(frozen=True)
class CheckinOutcome:
    """The answer to one ``CheckinRequest``: an offer, nothing to do, or why it was refused
    (a refused check-in records nothing)."""

    offer: Offer | None = None
    error: OTAGuardError | None = None


#: the locked device rows of a batch, by id (``_DEVICES_FOR_CHECKIN``)
_DeviceRows = Mapping[str, Row[*tuple[Any, ...]]]
_DEVICES = cast(Table, Device.__table__)
_TARGETS = cast(Table, DeploymentTarget.__table__)
_DEPLOYMENTS = cast(Table, Deployment.__table__)
_RECORD_REPORT = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("b_id"))
    .values(
        current_version=bindparam("b_version"),
        active_slot=bindparam("b_slot"),
        security_version=bindparam("b_security"),
        agent_version=bindparam("b_agent"),
        last_seen=bindparam("b_seen"),
        manifest_at=func.coalesce(bindparam("b_mat", type_=UtcDateTime()), _DEVICES.c.manifest_at),
        manifest_nonce=func.coalesce(bindparam("b_mnonce"), _DEVICES.c.manifest_nonce),
        image_sha256=bindparam("b_image"),
        manifest_sequence=func.coalesce(bindparam("b_mseq"), _DEVICES.c.manifest_sequence),
    )
)
_DEVICES_FOR_CHECKIN = (
    select(
        _DEVICES.c.id,
        _DEVICES.c.hardware,
        _DEVICES.c.credential_hash,
        _DEVICES.c.manifest_key,
        _DEVICES.c.assignment_counter,
        _DEVICES.c.accepted,
        _DEVICES.c.decommissioned_at,
        _DEVICES.c.security_version,
        _DEVICES.c.manifest_at,
        _DEVICES.c.manifest_nonce,
        _DEVICES.c.manifest_sequence,
    )
    .where(_DEVICES.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_DEVICES.c.id)
    .with_for_update()
)
#: per device, its targets in active deployments still waiting or running, newest first
_OPEN_TARGETS = (
    select(
        _TARGETS.c.device_id,
        _TARGETS.c.status,
        _DEPLOYMENTS.c.id,
        _DEPLOYMENTS.c.target_name,
        _TARGETS.c.admitted,
        _DEPLOYMENTS.c.rollout_status,
        _DEPLOYMENTS.c.start_at,
    )
    .join(_DEPLOYMENTS, _DEPLOYMENTS.c.id == _TARGETS.c.deployment_id)
    .where(
        _TARGETS.c.device_id.in_(bindparam("ids", expanding=True)),
        _TARGETS.c.status.in_([TargetStatus.PENDING.value, TargetStatus.IN_PROGRESS.value]),
        _DEPLOYMENTS.c.state == DeploymentState.ACTIVE.value,
    )
    .order_by(_DEPLOYMENTS.c.id.desc())
)
_RAISE_COUNTER = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("b_id"))
    .values(assignment_counter=bindparam("b_counter"))
)


def _released(row: Row[*tuple[Any, ...]], now: dt.datetime) -> bool:
    """Has the rollout let this target start (phased: admitted, running; a device already
    updating keeps its offer through a pause) and has the deployment's start time come?"""
    if not row.admitted or (row.start_at is not None and row.start_at > now):
        return False
    running = row.rollout_status in (None, RolloutStatus.RUNNING.value)
    return running or row.status == TargetStatus.IN_PROGRESS.value


def _offers_for(
    conn: Connection, device_ids: list[str], now: dt.datetime
) -> dict[str, tuple[int, str]]:
    """Per device, the deployment to offer (id, target name): the newest active deployment
    it is part of decides (none if that one no longer offers it, or not yet)."""
    offered: dict[str, tuple[int, str]] = {}
    seen: set[str] = set()
    for row in conn.execute(_OPEN_TARGETS, {"ids": device_ids}):
        if row.device_id not in seen:
            seen.add(row.device_id)
            if is_offered(TargetStatus(row.status)) and _released(row, now):
                offered[row.device_id] = (row.id, row.target_name)
    return offered


def _accept(
    requests: Sequence[CheckinRequest],
    rows: _DeviceRows,
    now: dt.datetime,
    outcomes: list[CheckinOutcome],
    observed: deque[ManifestObservation],
) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """Authenticate and verify each request against its locked device row. Refusals go into
    ``outcomes``; returns the reports to record (per device, its last) and the accepted
    requests' indexes."""
    reports: dict[str, dict[str, Any]] = {}
    accepted: list[int] = []
    last = {
        d: ManifestMark(r.manifest_sequence, r.manifest_at, r.manifest_nonce)
        for d, r in rows.items()
    }
    for i, request in enumerate(requests):
        row = rows.get(request.device_id)
        try:
            if request.credential is not None:
                expected = row.credential_hash if row else secret_hash("\0invalid")
                ok = hmac.compare_digest(expected, secret_hash(request.credential))
                if row is None or not ok:
                    raise AuthError("unknown device or wrong credential")
            if row is None:
                raise NotFoundError(f"no device {request.device_id}")
            report = request.report(row.manifest_key)
            if report.hardware != row.hardware:
                raise CompatibilityError(
                    f"device reports hardware {report.hardware!r}, registered as {row.hardware!r}"
                )
            mark = ManifestMark(report.sequence, report.time, report.nonce)
            if is_replay(mark, last[request.device_id]):
                observed.append(
                    replay_seen(request.device_id, report, row.security_version, last, now)
                )
                raise replay_error(report, last[request.device_id])
        except OTAGuardError as exc:
            outcomes[i] = CheckinOutcome(error=exc)
            continue
        if report.security_version < row.security_version:  # for the anomaly scan
            observed.append(
                ManifestObservation(
                    request.device_id, report.security_version, row.security_version, now
                )
            )
        reports[request.device_id] = {
            "b_id": request.device_id,
            "b_version": report.version,
            "b_slot": report.slot,
            "b_security": report.security_version,
            "b_agent": report.agent_version,
            "b_seen": now,
            "b_mat": report.time,
            "b_mnonce": report.nonce,
            "b_image": report.image_sha256,
            "b_mseq": None,
        }
        if report.time is not None:  # a manifest without a sequence keeps the last one
            before = last[request.device_id].sequence
            seq = report.sequence if report.sequence is not None else before
            last[request.device_id] = ManifestMark(seq, report.time, report.nonce)
            # the batch's highest (the device's last report of the batch may have none)
            reports[request.device_id]["b_mseq"] = seq
        accepted.append(i)
    return reports, accepted


def _offer(
    conn: Connection,
    requests: Sequence[CheckinRequest],
    accepted: list[int],
    reports: Mapping[str, Mapping[str, Any]],
    rows: _DeviceRows,
    outcomes: list[CheckinOutcome],
) -> None:
    """Give each accepted request its offer, if any, with the device's next assignment
    counter (a device twice in the batch gets two), and store the counters raised.
    ``reports``: what the accepted requests' devices reported (their last), by device."""
    reported = list(reports)
    eligible = [
        d for d in reported if rows[d].accepted and rows[d].decommissioned_at is None
    ]  # an operator has not yet accepted the device, or retired it: nothing to offer
    offers = _offers_for(conn, eligible, utcnow()) if eligible else {}
    counters = {device_id: rows[device_id].assignment_counter for device_id in reported}
    for i in accepted:
        device_id = requests[i].device_id
        found = offers.get(device_id)
        if found is not None:
            counters[device_id] += 1
            image = reports[device_id]["b_image"]
            outcomes[i] = CheckinOutcome(offer=Offer(*found, counters[device_id], image))
    raised = [
        {"b_id": device_id, "b_counter": counter}
        for device_id, counter in counters.items()
        if counter != rows[device_id].assignment_counter
    ]
    if raised:
        conn.execute(_RAISE_COUNTER, raised)


class CheckIns:
    """Check-ins on one ``Database``: record what devices run, find what to offer them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        #: reports below the device's recorded security version and refused replays, for
        #: the anomaly scan to take
        self.observed: deque[ManifestObservation] = deque(maxlen=10_000)

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
        """Record what the device runs; return the deployment it should apply, if any.

        With ``manifest``, what is recorded is what it returns when called with the device's
        registered manifest key (it verifies the device's signed report); if it raises, nothing
        is recorded.

        Raises:
            OTAGuardError: the check-in was refused, as ``check_in_many`` reports per request.
        """
        given = Reported(hardware, version, slot, security_version, agent_version)
        request = CheckinRequest(device_id, manifest or (lambda _key: given))
        (outcome,) = self.check_in_many([request])
        if outcome.error is not None:
            raise outcome.error
        return outcome.offer

    def check_in_many(
        self, requests: Sequence[CheckinRequest], *, wait: bool = True
    ) -> list[CheckinOutcome]:
        """Check-ins of many devices in one transaction (the server's group commit): per
        request, authenticate (when it carries a credential), verify the report with the
        device's key, record it, and find the deployment to offer. A refused request records
        nothing and does not affect the others; outcomes are in the order of ``requests``.

        Device rows are locked in id order, so concurrent batches (two servers on one
        PostgreSQL database) cannot deadlock. A device twice in one batch is handled in order
        (its last report stays, each offer gets its own counter). ``wait``: as for
        ``Database.session``.

        A refusal is not raised: it is the request's ``CheckinOutcome.error`` (refuse: the
        device is told why and nothing of it was recorded): ``AuthError`` (unknown device or
        wrong credential), ``NotFoundError`` (no such device), ``CompatibilityError``
        (reported hardware differs from the registered), or whatever ``OTAGuardError`` the
        request's ``report`` raised (``ManifestError``: the signed manifest does not verify).

        Raises:
            StoreBusyError: ``wait`` is False and another writer holds the database; nothing
                was done (retry: the server's batcher runs the batch again on a thread that
                may wait).
            sqlalchemy.exc.SQLAlchemyError: the database failed (connection lost, deadlock,
                serialization failure); the whole transaction was rolled back and nothing of
                the batch was recorded (retry: every device in it may check in again).
            Exception: anything else a request's ``report`` raises that is not an
                ``OTAGuardError`` (a bug) aborts the whole batch the same way.
        """
        if not requests:
            return []
        ids = sorted({r.device_id for r in requests})
        outcomes: list[CheckinOutcome] = [CheckinOutcome()] * len(requests)
        now = utcnow()
        with self.db.session(wait=wait) as s:
            conn = s.connection()  # Core statements built once (module level): the hot path
            rows = {row.id: row for row in conn.execute(_DEVICES_FOR_CHECKIN, {"ids": ids})}
            reports, accepted = _accept(requests, rows, now, outcomes, self.observed)
            if not reports:
                return outcomes
            conn.execute(_RECORD_REPORT, list(reports.values()))  # one executemany
            _offer(conn, requests, accepted, reports, rows, outcomes)
        return outcomes
