"""The database connection: engine set-up, transactions and schema migrations.

Why a module of its own: every concern of the store (check-ins, deployments, devices...) runs
its statements through ``Database.session``, and how a transaction begins differs by backend.
On SQLite (WAL) a writer takes the write lock when its transaction begins (``BEGIN
IMMEDIATE``) and this process's writers queue on a lock rather than in SQLite's busy handler;
PostgreSQL needs neither. The schema is the Alembic migrations in ``migrations/``, applied by
``migrate`` under a lock so server processes starting together migrate once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from otaguard.errors import ConfigError, StoreBusyError, StoreError

FIRST_REVISION = "0001"
#: execution option of a write transaction (SQLite takes the write lock when it begins)
WRITE = "otaguard_write"
#: a writer that must not wait for another (``Database.session(wait=False)``)
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


def alembic_config(connection: Connection) -> Any:
    """An Alembic configuration that runs this package's migrations on ``connection``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", "otaguard.store:migrations")
    cfg.attributes["connection"] = connection
    return cfg


def schema_revision(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> str:
    """Upgrade the schema to the newest Alembic revision; return that revision.

    Runs in one transaction under a lock (SQLite's write lock, a PostgreSQL advisory lock),
    so server processes starting together migrate once. A database made by the first
    releases (``create_all``, no ``alembic_version``) is stamped at the first revision and
    upgraded from there.
    """
    from alembic import command

    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            cfg = alembic_config(conn)
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


class Database:
    """One database (by URL): its engine, and one transaction per ``session``."""

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
        """Upgrade the schema to the newest revision (``migrate``); return that revision."""
        return migrate(self.engine)

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
