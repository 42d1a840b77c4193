"""The schema comes from the Alembic migrations and equals the models' metadata."""

from __future__ import annotations

import json

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from otaguard.store.database import Store
from otaguard.store.engine import alembic_config, schema_revision
from otaguard.store.schema import Base

from .helpers import HW


def _diffs(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, Base.metadata))


def test_migrated_schema_equals_the_models(db_url: str) -> None:
    store = Store(db_url)
    try:
        assert store.migrate() == "0009"
        assert _diffs(store) == []
        with store.engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert schema_revision(conn) == "0009"
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        # Starting again is a no-op.
        assert store.migrate() == "0009"
        assert _diffs(store) == []
    finally:
        store.close()


def test_a_difference_would_be_seen(db_url: str) -> None:
    """The comparison is not vacuous: a schema one revision behind differs from the models."""
    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
        diffs = _diffs(store)
        assert any("device_tags" in repr(d) for d in diffs)
        assert any("report_id" in repr(d) for d in diffs)
    finally:
        store.close()


def test_pre_migration_database_is_adopted_and_keeps_its_tags(db_url: str) -> None:
    """A database created before migrations (no alembic_version) is stamped and upgraded;
    the tags its devices had move into device_tags."""
    store = Store(db_url)
    try:
        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(text("DROP TABLE alembic_version"))
            conn.execute(
                text(
                    "INSERT INTO devices (id, hardware, credential_hash, tags, security_version,"
                    " update_state, assignment_counter, created_at) VALUES"
                    " (:id, :hw, 'x', :tags, 0, 'idle', 3, CURRENT_TIMESTAMP)"
                ),
                [
                    {"id": "old-1", "hw": HW, "tags": json.dumps(["lab", "eu"])},
                    {"id": "old-2", "hw": HW, "tags": json.dumps([])},
                ],
            )
        assert store.migrate() == "0009"
        assert _diffs(store) == []
        assert store.get_device("old-1").tags == ["eu", "lab"]
        assert store.get_device("old-2").tags == []
        assert [d.id for d in store.list_devices(tag="lab")[0]] == ["old-1"]
    finally:
        store.close()


def test_downgrade_and_upgrade_keep_tags(store: Store) -> None:
    store.register_device("d1", HW, "c", ["a", "b"])
    with store.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
        raw = conn.execute(text("SELECT tags FROM devices WHERE id = 'd1'")).scalar_one()
    assert sorted(json.loads(raw) if isinstance(raw, str) else raw) == ["a", "b"]
    assert store.migrate() == "0009"
    assert store.get_device("d1").tags == ["a", "b"]
