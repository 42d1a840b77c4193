"""The server's database: SQLite (WAL) by default, PostgreSQL for scale.

Every public method is one transaction. Methods return plain dataclasses / dicts so callers
never hold ORM objects past their session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    bindparam,
    create_engine,
    event,
    exists,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from otaguard.errors import (
    AuthError,
    CompatibilityError,
    ConfigError,
    ConflictError,
    NotFoundError,
    OTAGuardError,
    StoreBusyError,
    StoreError,
)
from otaguard.fleet.compatibility import Candidate, Exclusion, select_compatible
from otaguard.fleet.status import (
    FINAL_TARGET_STATUSES,
    DeploymentState,
    TargetStatus,
    UpdateEvent,
    deployment_state_after,
    is_offered,
    target_status_after,
)
from otaguard.store.models import (
    ApiToken,
    Deployment,
    DeploymentTarget,
    Device,
    DeviceTag,
    Release,
    StatusEvent,
    TufMetadata,
    utcnow,
)

MAX_DETAIL_CHARS = 4096
FIRST_REVISION = "0001"


_DEVICES = cast(Table, Device.__table__)
_RECORD_REPORT = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("b_id"))
    .values(
        current_version=bindparam("b_version"),
        active_slot=bindparam("b_slot"),
        security_version=bindparam("b_security"),
        agent_version=bindparam("b_agent"),
        last_seen=bindparam("b_seen"),
    )
)
_TARGETS = cast(Table, DeploymentTarget.__table__)
_DEPLOYMENTS = cast(Table, Deployment.__table__)
_DEVICES_FOR_CHECKIN = (
    select(
        _DEVICES.c.id,
        _DEVICES.c.hardware,
        _DEVICES.c.credential_hash,
        _DEVICES.c.manifest_key,
        _DEVICES.c.assignment_counter,
    )
    .where(_DEVICES.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(_DEVICES.c.id)
    .with_for_update()
)
#: per device, its targets in active deployments still waiting or running, newest first
_OPEN_TARGETS = (
    select(_TARGETS.c.device_id, _TARGETS.c.status, _DEPLOYMENTS.c.id, _DEPLOYMENTS.c.target_name)
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


def _offers_for(conn: Connection, device_ids: list[str]) -> dict[str, tuple[int, str]]:
    """Per device, the deployment to offer (id, target name): the newest active deployment
    it is part of decides (none if that one no longer offers it)."""
    offered: dict[str, tuple[int, str]] = {}
    seen: set[str] = set()
    for device_id, status, deployment_id, target_name in conn.execute(
        _OPEN_TARGETS, {"ids": device_ids}
    ):
        if device_id not in seen:
            seen.add(device_id)
            if is_offered(TargetStatus(status)):
                offered[device_id] = (deployment_id, target_name)
    return offered


def _target_dict(t: DeploymentTarget) -> dict[str, Any]:
    return {
        "device_id": t.device_id,
        "status": t.status,
        "last_event": t.last_event,
        "detail": t.detail,
        "updated_at": t.updated_at,
    }


def secret_hash(secret: str) -> str:
    """Hash of a high-entropy secret (tokens are random 256-bit values, so no KDF is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


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
    #: devices the selector picked that were left out, and why (set on creation only)
    excluded: tuple[Exclusion, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


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


@dataclass(frozen=True)
class Offer:
    """What the director should sign for a checking-in device."""

    deployment_id: int
    target_name: str
    counter: int


@dataclass(frozen=True)
class Reported:
    """A report given directly (tests, tools): a ``DeviceReport`` without a signature."""

    hardware: str
    version: str | None
    slot: str | None
    security_version: int
    agent_version: str | None


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


#: execution option of a write transaction (SQLite takes the write lock when it begins)
WRITE = "otaguard_write"
#: a writer that must not wait for another (``Store.session(wait=False)``)
NO_WAIT = "otaguard_no_wait"
SQLITE_BUSY_MS = 30000
#: pg_advisory_xact_lock key held while migrations run (any constant unlikely to collide)
MIGRATION_LOCK = 0x07A6_0A4D


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off: SQLAlchemy's "begin" event below
    # emits BEGIN itself, IMMEDIATE for writers, so a read-then-write transaction (a counter
    # increment, say) can never interleave with another writer and lose an update.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    options = conn.get_execution_options()
    if not options.get(WRITE, True):
        conn.exec_driver_sql("BEGIN")
    elif options.get(NO_WAIT, False):
        # Another process (a CLI command, a second server starting) may hold the write lock:
        # do not sit in SQLite's busy handler, say so at once.
        conn.exec_driver_sql("PRAGMA busy_timeout = 0")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError as exc:
            raise StoreBusyError(f"another process holds the database: {exc.orig}") from None
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=16,
            max_overflow=48,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "otaguard.store:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def schema_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock()
        self._is_sqlite = url.startswith("sqlite")
        self._read_sessions = sessionmaker(
            self.engine.execution_options(**{WRITE: False}), expire_on_commit=False
        )
        self._no_wait_sessions = sessionmaker(
            self.engine.execution_options(**{NO_WAIT: True}), expire_on_commit=False
        )

    def migrate(self) -> str:
        """Upgrade the schema to the newest Alembic revision; return that revision.

        Runs in one transaction under a lock (SQLite's write lock, a PostgreSQL advisory lock),
        so server processes starting together migrate once. A database made by the first
        releases (``create_all``, no ``alembic_version``) is stamped at the first revision and
        upgraded from there.
        """
        from alembic import command

        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                cfg = _alembic_config(conn)
                tables = set(inspect(conn).get_table_names())
                if "devices" in tables and "alembic_version" not in tables:
                    command.stamp(cfg, FIRST_REVISION)
                command.upgrade(cfg, "head")
                revision = schema_revision(conn)
        except Exception as exc:
            raise ConfigError(f"cannot migrate the database schema: {exc}") from exc
        if revision is None:  # pragma: no cover - upgrade always stamps
            raise StoreError("database has no schema revision after migrating")
        return revision

    def create_schema(self) -> None:
        """The schema the server runs on: the Alembic migrations, not ``create_all``."""
        self.migrate()

    def close(self) -> None:
        self.engine.dispose()

    @property
    def is_sqlite(self) -> bool:
        """The embedded database (one writer at a time, no network round trips)."""
        return self._is_sqlite

    @contextmanager
    def session(self, *, write: bool = True, wait: bool = True) -> Iterator[Session]:
        """One transaction. On SQLite a writer takes the database write lock at its start;
        with ``wait`` False it raises ``StoreBusyError`` instead of waiting for another writer
        of this process."""
        maker = (
            self._read_sessions if not write else self._sessions if wait else self._no_wait_sessions
        )
        # SQLite has one writer at a time; a writer that finds the lock taken sleeps in
        # SQLite's busy handler (1, 2, 5 ... 100 ms steps). Queueing this process's writers on a
        # lock instead hands the database over the moment it is free.
        lock = self._write_lock if (write and self._is_sqlite) else None
        if lock is not None and not lock.acquire(blocking=wait):
            raise StoreBusyError("another writer holds the database")
        try:
            with maker() as s, s.begin():
                yield s
        finally:
            if lock is not None:
                lock.release()

    # -- API tokens -------------------------------------------------------------------------
    def add_api_token(self, name: str, token: str) -> None:
        with self.session() as s:
            s.merge(ApiToken(token_hash=secret_hash(token), name=name))

    def check_api_token(self, token: str) -> str:
        with self.session(write=False) as s:
            row = s.get(ApiToken, secret_hash(token))
            if row is None:
                raise AuthError("invalid API token")
            return row.name

    # -- devices ----------------------------------------------------------------------------
    def register_device(
        self,
        device_id: str,
        hardware: str,
        credential: str,
        tags: list[str] | None = None,
        manifest_key: str | None = None,
    ) -> DeviceView:
        with self.session() as s:
            if s.get(Device, device_id) is not None:
                raise ConflictError(f"device {device_id} is already registered")
            d = Device(
                id=device_id,
                hardware=hardware,
                credential_hash=secret_hash(credential),
                manifest_key=manifest_key,
                tag_rows=[DeviceTag(tag=t) for t in sorted(set(tags or []))],
            )
            s.add(d)
            try:
                s.flush()
            except IntegrityError as exc:
                raise ConflictError(f"device {device_id} is already registered") from exc
            return DeviceView.of(d)

    def authenticate_device(self, device_id: str, credential: str) -> None:
        with self.session(write=False) as s:
            d = s.get(Device, device_id)
            expected = d.credential_hash if d else secret_hash("\0invalid")
            ok = hmac.compare_digest(expected, secret_hash(credential))
            if d is None or not ok:
                raise AuthError("unknown device or wrong credential")

    def get_device(self, device_id: str) -> DeviceView:
        with self.session(write=False) as s:
            d = s.get(Device, device_id)
            if d is None:
                raise NotFoundError(f"no device {device_id}")
            return DeviceView.of(d)

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
        """One page of devices (by id) matching every filter given, and the total matching
        (``state``: the update state the device last reported, e.g. ``rolled_back``)."""
        with self.session(write=False) as s:
            cond = _device_filter(hardware=hardware, tag=tag, version=version)
            if state:
                cond.append(Device.update_state == state)
            total = s.scalar(select(func.count()).select_from(Device).where(*cond)) or 0
            page = s.scalars(
                select(Device).where(*cond).order_by(Device.id).limit(limit).offset(offset)
            )
            return [DeviceView.of(d) for d in page], int(total)

    def set_device_tags(self, device_id: str, tags: list[str]) -> DeviceView:
        with self.session() as s:
            d = s.get(Device, device_id, with_for_update=True)
            if d is None:
                raise NotFoundError(f"no device {device_id}")
            wanted = set(tags)
            d.tag_rows = [t for t in d.tag_rows if t.tag in wanted] + [
                DeviceTag(tag=t) for t in sorted(wanted - set(d.tags))
            ]
            s.flush()
            s.refresh(d, ["tag_rows"])
            return DeviceView.of(d)

    def tag_counts(self) -> list[tuple[str, int]]:
        """Every tag in use and how many devices carry it, by tag."""
        with self.session(write=False) as s:
            rows = s.execute(
                select(DeviceTag.tag, func.count()).group_by(DeviceTag.tag).order_by(DeviceTag.tag)
            )
            return [(str(tag), int(n)) for tag, n in rows]

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
        is recorded."""
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
        ``session``."""
        if not requests:
            return []
        ids = sorted({r.device_id for r in requests})
        outcomes: list[CheckinOutcome] = [CheckinOutcome()] * len(requests)
        now = utcnow()
        with self.session(wait=wait) as s:
            conn = s.connection()  # Core statements built once (module level): the hot path
            rows = {row.id: row for row in conn.execute(_DEVICES_FOR_CHECKIN, {"ids": ids})}
            reports: dict[str, dict[str, Any]] = {}
            accepted: list[int] = []
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
                            f"device reports hardware {report.hardware!r}, "
                            f"registered as {row.hardware!r}"
                        )
                except OTAGuardError as exc:
                    outcomes[i] = CheckinOutcome(error=exc)
                    continue
                reports[request.device_id] = {
                    "b_id": request.device_id,
                    "b_version": report.version,
                    "b_slot": report.slot,
                    "b_security": report.security_version,
                    "b_agent": report.agent_version,
                    "b_seen": now,
                }
                accepted.append(i)
            if not reports:
                return outcomes
            conn.execute(_RECORD_REPORT, list(reports.values()))  # one executemany
            offers = _offers_for(conn, list(reports))
            counters = {device_id: rows[device_id].assignment_counter for device_id in reports}
            for i in accepted:
                device_id = requests[i].device_id
                found = offers.get(device_id)
                if found is not None:
                    counters[device_id] += 1
                    outcomes[i] = CheckinOutcome(offer=Offer(*found, counters[device_id]))
            raised = [
                {"b_id": device_id, "b_counter": counter}
                for device_id, counter in counters.items()
                if counter != rows[device_id].assignment_counter
            ]
            if raised:
                conn.execute(_RAISE_COUNTER, raised)
        return outcomes

    # -- status events ----------------------------------------------------------------------
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
        """Store a report and apply it to the device and its deployment, in one transaction.

        A report with a ``report_id`` the device already used is not stored or applied again:
        the stored one is returned (the device retries reports it got no answer for).
        """
        detail = _bounded(detail)
        try:
            return self._record_event(
                device_id, event, deployment_id, version, slot, detail, report_id
            )
        except IntegrityError:
            if report_id is None:
                raise
            # Another transaction stored the same report first: return that one.
            with self.session(write=False) as s:
                stored = _stored_report(s, device_id, report_id)
                if stored is None:
                    raise
                return _event_view(stored)

    def _record_event(
        self,
        device_id: str,
        event: UpdateEvent,
        deployment_id: int | None,
        version: str | None,
        slot: str | None,
        detail: dict[str, Any],
        report_id: str | None,
    ) -> EventView:
        with self.session() as s:
            d = s.get(Device, device_id, with_for_update=True)
            if d is None:
                raise NotFoundError(f"no device {device_id}")
            if report_id is not None:
                stored = _stored_report(s, device_id, report_id)
                if stored is not None:
                    return _event_view(stored)
            ev = StatusEvent(
                report_id=report_id,
                device_id=device_id,
                deployment_id=deployment_id,
                event=event.value,
                version=version,
                slot=slot,
                detail=detail,
            )
            s.add(ev)
            d.update_state = event.value
            d.last_seen = utcnow()
            if event in (UpdateEvent.COMMITTED, UpdateEvent.ROLLED_BACK, UpdateEvent.BOOTED):
                if version is not None:
                    d.current_version = version
                if slot is not None:
                    d.active_slot = slot
            if deployment_id is not None:
                self._apply_to_deployment(s, device_id, deployment_id, event, detail)
            s.flush()
            return _event_view(ev)

    def _apply_to_deployment(
        self,
        s: Session,
        device_id: str,
        deployment_id: int,
        event: UpdateEvent,
        detail: dict[str, Any],
    ) -> None:
        t = s.get(DeploymentTarget, (deployment_id, device_id), with_for_update=True)
        if t is None:
            return  # a report about a deployment this device is not part of: kept, not applied
        t.status = target_status_after(TargetStatus(t.status), event).value
        t.last_event = event.value
        reason = detail.get("error") or detail.get("reason")
        if reason:
            t.detail = str(reason)[:MAX_DETAIL_CHARS]
        t.updated_at = utcnow()
        s.flush()
        if TargetStatus(t.status) not in FINAL_TARGET_STATUSES:
            return
        # Lock order everywhere: device, then its target rows, then the deployment.
        dep = s.get(Deployment, deployment_id, with_for_update=True)
        if dep is not None:
            statuses = [
                TargetStatus(x)
                for x in s.scalars(
                    select(DeploymentTarget.status)
                    .where(DeploymentTarget.deployment_id == deployment_id)
                    .distinct()
                )
            ]
            dep.state = deployment_state_after(DeploymentState(dep.state), statuses).value

    def events(
        self, device_id: str, limit: int = 200, before: int | None = None
    ) -> list[EventView]:
        """The device's ``limit`` most recent status events (with an id below ``before``, to
        page back through its history), oldest first."""
        with self.session(write=False) as s:
            query = select(StatusEvent).where(StatusEvent.device_id == device_id)
            if before is not None:
                query = query.where(StatusEvent.id < before)
            rows = s.scalars(query.order_by(StatusEvent.id.desc()).limit(limit))
            return [_event_view(e) for e in reversed(list(rows))]

    # -- releases ---------------------------------------------------------------------------
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
        with self.session() as s:
            r = s.get(Release, target_name)
            if r is None:
                r = Release(target_name=target_name)
                s.add(r)
            elif r.sha256 != sha256:
                raise ConflictError(f"release {target_name} exists with other content")
            r.version, r.hardware, r.security_version = version, hardware, security_version
            r.sha256, r.length, r.custom = sha256, length, custom
            s.flush()
            return ReleaseView.of(r)

    def get_release(self, target_name: str) -> ReleaseView:
        with self.session(write=False) as s:
            r = s.get(Release, target_name)
            if r is None:
                raise NotFoundError(f"no release {target_name}")
            return ReleaseView.of(r)

    def list_releases(self) -> list[ReleaseView]:
        with self.session(write=False) as s:
            return [
                ReleaseView.of(r) for r in s.scalars(select(Release).order_by(Release.created_at))
            ]

    # -- deployments ------------------------------------------------------------------------
    def create_deployment(
        self,
        *,
        name: str,
        target_name: str,
        selector: dict[str, Any],
        created_by: str,
        production_tags: Collection[str] = (),
    ) -> DeploymentView:
        """Deploy a release to the devices the selector picks (all, ``tag``, ``hardware``,
        ``devices``). Devices that could never install it are left out with a reason
        (``fleet.compatibility``: hardware, anti-rollback, unknown ids), reported in the
        returned view's ``excluded``; if none is left the deployment is refused. If the selector's tag or an included device's tag
        is in ``production_tags``, the deployment waits for approval (two-person rule) and no
        device is offered it until then."""
        with self.session() as s:
            rel = s.get(Release, target_name)
            if rel is None:
                raise NotFoundError(f"no release {target_name}")
            cond = _device_filter(hardware=selector.get("hardware"), tag=selector.get("tag"))
            named = set(selector.get("devices") or ())
            if named:
                cond.append(Device.id.in_(sorted(named)))
            devices = list(s.scalars(select(Device).where(*cond).order_by(Device.id)))
            known = set(s.scalars(select(Device.id).where(Device.id.in_(sorted(named)))))
            selection = select_compatible(
                (Candidate(d.id, d.hardware, d.security_version) for d in devices),
                release_hardware=list(rel.hardware),
                release_security_version=rel.security_version,
                unknown=named - known,
            )
            if not selection.included:
                raise CompatibilityError(
                    f"no selected device ({len(devices)} matched) can install {target_name} "
                    f"(hardware {', '.join(rel.hardware)}, security version "
                    f"{rel.security_version}); left out: {selection.summary() or 'none'}"
                )
            production = set(production_tags)
            included = set(selection.included)
            gated = selector.get("tag") in production or any(
                production.intersection(d.tags) for d in devices if d.id in included
            )
            dep = Deployment(
                name=name,
                target_name=target_name,
                selector=selector,
                created_by=created_by,
                state=(
                    DeploymentState.AWAITING_APPROVAL if gated else DeploymentState.ACTIVE
                ).value,
            )
            s.add(dep)
            s.flush()
            for device_id in selection.included:
                s.add(DeploymentTarget(deployment_id=dep.id, device_id=device_id))
            s.flush()
            return replace(self._deployment_view(s, dep), excluded=selection.excluded)

    def cancel_deployment(self, deployment_id: int) -> DeploymentView:
        with self.session() as s:
            if s.get(Deployment, deployment_id) is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            # Target rows before the deployment row: the order record_event locks them in.
            open_targets = list(
                s.scalars(
                    select(DeploymentTarget)
                    .where(
                        DeploymentTarget.deployment_id == deployment_id,
                        DeploymentTarget.status.in_(
                            [TargetStatus.PENDING.value, TargetStatus.IN_PROGRESS.value]
                        ),
                    )
                    .order_by(DeploymentTarget.device_id)
                    .with_for_update()
                )
            )
            dep = s.get(Deployment, deployment_id, with_for_update=True, populate_existing=True)
            assert dep is not None
            if dep.state not in (
                DeploymentState.ACTIVE.value,
                DeploymentState.AWAITING_APPROVAL.value,
            ):
                raise ConflictError(f"deployment {deployment_id} is {dep.state}, not active")
            dep.state = DeploymentState.CANCELLED.value
            for t in open_targets:
                t.status = TargetStatus.CANCELLED.value
                t.updated_at = utcnow()
            s.flush()
            return self._deployment_view(s, dep)

    def get_deployment(self, deployment_id: int) -> DeploymentView:
        with self.session(write=False) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return self._deployment_view(s, dep)

    def deployment_state(self, deployment_id: int) -> str:
        with self.session(write=False) as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFoundError(f"no deployment {deployment_id}")
            return dep.state

    def list_deployments(
        self, *, state: str | None = None, limit: int | None = None, offset: int = 0
    ) -> list[DeploymentView]:
        """Deployments by id, optionally only those in ``state``, one page at a time."""
        with self.session(write=False) as s:
            q = select(Deployment).order_by(Deployment.id).offset(offset).limit(limit)
            if state is not None:
                q = q.where(Deployment.state == state)
            return [self._deployment_view(s, d) for d in s.scalars(q)]

    def count_deployments(self, *, state: str | None = None) -> int:
        with self.session(write=False) as s:
            q = select(func.count()).select_from(Deployment)
            if state is not None:
                q = q.where(Deployment.state == state)
            return int(s.scalar(q) or 0)

    def deployment_targets(
        self,
        deployment_id: int,
        *,
        status: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """The deployment's devices by id, optionally only those with ``status``, one page at
        a time."""
        with self.session(write=False) as s:
            q = (
                select(DeploymentTarget)
                .where(DeploymentTarget.deployment_id == deployment_id)
                .order_by(DeploymentTarget.device_id)
                .offset(offset)
                .limit(limit)
            )
            if status is not None:
                q = q.where(DeploymentTarget.status == status)
            return [_target_dict(t) for t in s.scalars(q)]

    def count_deployment_targets(self, deployment_id: int, *, status: str | None = None) -> int:
        with self.session(write=False) as s:
            q = select(func.count()).where(DeploymentTarget.deployment_id == deployment_id)
            if status is not None:
                q = q.where(DeploymentTarget.status == status)
            return int(s.scalar(q) or 0)

    def deployment_target(self, deployment_id: int, device_id: str) -> dict[str, Any] | None:
        """One device's row in a deployment (None if it is not part of it): one key lookup,
        for the agent's cancellation check, however large the deployment."""
        with self.session(write=False) as s:
            t = s.get(DeploymentTarget, (deployment_id, device_id))
            return None if t is None else _target_dict(t)

    @staticmethod
    def _deployment_view(s: Session, dep: Deployment) -> DeploymentView:
        counts = {
            str(status): int(n)
            for status, n in s.execute(
                select(DeploymentTarget.status, func.count())
                .where(DeploymentTarget.deployment_id == dep.id)
                .group_by(DeploymentTarget.status)
            )
        }
        return DeploymentView(
            dep.id,
            dep.name,
            dep.target_name,
            dict(dep.selector or {}),
            dep.state,
            dep.created_by,
            dep.created_at,
            counts,
        )


def _device_filter(
    *, hardware: str | None = None, tag: str | None = None, version: str | None = None
) -> list[ColumnElement[bool]]:
    cond: list[ColumnElement[bool]] = []
    if hardware:
        cond.append(Device.hardware == hardware)
    if version:
        cond.append(Device.current_version == version)
    if tag:
        cond.append(exists().where(DeviceTag.device_id == Device.id, DeviceTag.tag == tag))
    return cond


def _stored_report(s: Session, device_id: str, report_id: str) -> StatusEvent | None:
    return s.scalars(
        select(StatusEvent).where(
            StatusEvent.device_id == device_id, StatusEvent.report_id == report_id
        )
    ).first()


def _bounded(detail: dict[str, Any]) -> dict[str, Any]:
    """Keep reports bounded: long strings (log excerpts) are cut to ``MAX_DETAIL_CHARS``."""
    out: dict[str, Any] = {}
    for k, v in list(detail.items())[:32]:
        key = str(k)[:64]
        if isinstance(v, str):
            out[key] = v[-MAX_DETAIL_CHARS:] if key == "log" else v[:MAX_DETAIL_CHARS]
        elif isinstance(v, int | float | bool) or v is None:
            out[key] = v
        else:
            out[key] = str(v)[:MAX_DETAIL_CHARS]
    return out


def _event_view(e: StatusEvent) -> EventView:
    return EventView(
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


class SqlMetadataStore:
    """``MetadataStore`` over the ``tuf_metadata`` table, shared by every server process."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def names(self) -> list[str]:
        with self.store.session(write=False) as s:
            return list(s.scalars(select(TufMetadata.name).order_by(TufMetadata.name)))

    def get(self, name: str) -> bytes | None:
        with self.store.session(write=False) as s:
            row = s.get(TufMetadata, name)
            return None if row is None else bytes(row.data)

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None:
        try:
            with self.store.session() as s:
                row = s.get(TufMetadata, name)
                if row is not None:
                    if not replace:
                        raise ConflictError(f"metadata {name} already exists")
                    row.data = data
                    row.updated_at = utcnow()
                else:
                    s.add(TufMetadata(name=name, data=data))
        except IntegrityError as exc:
            raise ConflictError(f"metadata {name} was written concurrently") from exc
