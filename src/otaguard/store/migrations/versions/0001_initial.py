"""Initial schema: devices, releases, deployments, status events, TUF metadata, API tokens.

This is the schema the first releases created with ``create_all``; ``Store.migrate`` stamps
such a database at this revision and upgrades it.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    _registry_tables()
    _deployment_and_event_tables()
    _deployment_target_table()


def _registry_tables() -> None:
    """API tokens, devices, releases and TUF metadata."""
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_api_tokens")),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("hardware", sa.String(length=64), nullable=False),
        sa.Column("credential_hash", sa.String(length=128), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("current_version", sa.String(length=64), nullable=True),
        sa.Column("active_slot", sa.String(length=8), nullable=True),
        sa.Column("security_version", sa.Integer(), nullable=False),
        sa.Column("agent_version", sa.String(length=64), nullable=True),
        sa.Column("update_state", sa.String(length=32), nullable=False),
        sa.Column("assignment_counter", sa.Integer(), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_devices")),
    )
    op.create_index(op.f("ix_devices_hardware"), "devices", ["hardware"], unique=False)
    op.create_table(
        "releases",
        sa.Column("target_name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("security_version", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("length", sa.Integer(), nullable=False),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target_name", name=op.f("pk_releases")),
    )
    op.create_index(op.f("ix_releases_version"), "releases", ["version"], unique=False)
    op.create_table(
        "tuf_metadata",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tuf_metadata")),
    )


def _deployment_and_event_tables() -> None:
    """Deployments and status events."""
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("target_name", sa.String(length=255), nullable=False),
        sa.Column("selector", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_name"],
            ["releases.target_name"],
            name=op.f("fk_deployments_target_name_releases"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployments")),
    )
    op.create_index(op.f("ix_deployments_state"), "deployments", ["state"], unique=False)
    op.create_table(
        "status_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=True),
        sa.Column("slot", sa.String(length=8), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_status_events_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_events")),
    )
    op.create_index(
        op.f("ix_status_events_deployment_id"), "status_events", ["deployment_id"], unique=False
    )
    op.create_index(
        op.f("ix_status_events_device_id"), "status_events", ["device_id"], unique=False
    )


def _deployment_target_table() -> None:
    """Each device's progress in a deployment."""
    op.create_table(
        "deployment_targets",
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("last_event", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployments.id"],
            name=op.f("fk_deployment_targets_deployment_id_deployments"),
        ),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_deployment_targets_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("deployment_id", "device_id", name=op.f("pk_deployment_targets")),
    )
    op.create_index(
        "ix_deployment_targets_device", "deployment_targets", ["device_id", "status"], unique=False
    )
    op.create_index(
        op.f("ix_deployment_targets_status"), "deployment_targets", ["status"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_deployment_targets_status"), table_name="deployment_targets")
    op.drop_index("ix_deployment_targets_device", table_name="deployment_targets")
    op.drop_table("deployment_targets")
    op.drop_index(op.f("ix_status_events_device_id"), table_name="status_events")
    op.drop_index(op.f("ix_status_events_deployment_id"), table_name="status_events")
    op.drop_table("status_events")
    op.drop_index(op.f("ix_deployments_state"), table_name="deployments")
    op.drop_table("deployments")
    op.drop_table("tuf_metadata")
    op.drop_index(op.f("ix_releases_version"), table_name="releases")
    op.drop_table("releases")
    op.drop_index(op.f("ix_devices_hardware"), table_name="devices")
    op.drop_table("devices")
    op.drop_table("api_tokens")
