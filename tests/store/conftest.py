"""The store test suite runs on SQLite and on PostgreSQL.

PostgreSQL is the machine's server at 127.0.0.1:5432 (user postgres, trust auth). The session
creates its own uniquely named database and drops it at the end; each test gets a fresh schema
in it (a ``search_path`` in the URL), so several test runs can share the server. Where the
server is unreachable the PostgreSQL cases skip with the reason (``scripts/start-services.sh``
starts it, so CI runs them).
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from otaguard.store.database import Store

PG_ADMIN_URL = os.environ.get(
    "OTAGUARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
_schemas = itertools.count(1)


def _pg_unreachable_reason() -> str | None:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency of the project
        return "psycopg is not installed"
    try:
        with psycopg.connect(_libpq(PG_ADMIN_URL), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at 127.0.0.1:5432 is unreachable ({str(exc).strip()[:120]})"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test session (``postgresql+psycopg://.../<name>``), dropped after."""
    reason = _pg_unreachable_reason()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"otaguard_test_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_schema_url(database_url: str) -> str:
    """A URL whose connections use a new, empty schema of ``database_url``."""
    import psycopg

    schema = f"t{next(_schemas)}_{secrets.token_hex(3)}"
    with psycopg.connect(_libpq(database_url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database_url}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database (no tables) on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    database: str = request.getfixturevalue("pg_database")
    return pg_schema_url(database)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A migrated store on each backend."""
    s = Store(db_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()
