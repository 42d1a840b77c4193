"""Phased rollouts and monitoring: plan, progress and outcome per deployment, phase and
admission per target, device acceptance and decommissioning, alerts, health reports.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): on SQLite a table copy of ``devices`` would cascade
    # into ``device_tags``.
    op.add_column(
        "devices", sa.Column("accepted", sa.Boolean(), server_default=sa.true(), nullable=False)
    )
    op.add_column("devices", sa.Column("decommissioned_at", sa.DateTime(timezone=True)))
    op.add_column("deployments", sa.Column("outcome", sa.String(16), nullable=True))
    op.add_column("deployments", sa.Column("start_at", sa.DateTime(timezone=True)))
    op.add_column(
        "deployments",
        sa.Column("allow_downgrade", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    for name in ("rollout_plan", "rollout_progress", "rollout_bucket"):
        op.add_column("deployments", sa.Column(name, sa.JSON(), nullable=True))
    op.add_column("deployments", sa.Column("rollout_status", sa.String(16), nullable=True))
    op.add_column("deployment_targets", sa.Column("phase", sa.Integer(), nullable=True))
    op.add_column("deployment_targets", sa.Column("rank", sa.Integer(), nullable=True))
    op.add_column(
        "deployment_targets",
        sa.Column("admitted", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("key", name=op.f("uq_alerts_key")),
    )
    op.create_index(op.f("ix_alerts_kind"), "alerts", ["kind"])
    op.create_index(op.f("ix_alerts_subject"), "alerts", ["subject"])
    op.create_table(
        "health_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("device_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=True),
        sa.Column("boot_seconds", sa.Float(), nullable=True),
        sa.Column("restarts", sa.Integer(), nullable=True),
        sa.Column("check_passed", sa.Boolean(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"], ["devices.id"], name=op.f("fk_health_reports_device_id_devices")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_reports")),
    )
    op.create_index(op.f("ix_health_reports_device_id"), "health_reports", ["device_id"])
    op.create_index(op.f("ix_health_reports_created_at"), "health_reports", ["created_at"])


def downgrade() -> None:
    op.drop_table("health_reports")
    op.drop_table("alerts")
    # Plain DROP COLUMN (SQLite >= 3.35), for the same reason as in ``upgrade``.
    for column in ("admitted", "rank", "phase"):
        op.drop_column("deployment_targets", column)
    for column in (
        "rollout_bucket",
        "rollout_status",
        "rollout_progress",
        "rollout_plan",
        "allow_downgrade",
        "start_at",
        "outcome",
    ):
        op.drop_column("deployments", column)
    op.drop_column("devices", "decommissioned_at")
    op.drop_column("devices", "accepted")
