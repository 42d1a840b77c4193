"""Device tags in their own table (filters and pagination in SQL); report ids on status events
(a device's retried report is stored once).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _tags(raw: Any) -> list[str]:
    value = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return sorted({str(t)[:64] for t in (value or [])})


def upgrade() -> None:
    tags = op.create_table(
        "device_tags",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_id"],
            ["devices.id"],
            name=op.f("fk_device_tags_device_id_devices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_id", "tag", name=op.f("pk_device_tags")),
    )
    op.create_index(op.f("ix_device_tags_tag"), "device_tags", ["tag"], unique=False)
    conn = op.get_bind()
    rows = [
        {"device_id": device_id, "tag": tag}
        for device_id, raw in conn.execute(sa.text("SELECT id, tags FROM devices"))
        for tag in _tags(raw)
    ]
    if rows:
        op.bulk_insert(tags, rows)
    op.drop_column("devices", "tags")
    op.add_column("status_events", sa.Column("report_id", sa.String(length=64), nullable=True))
    op.create_index(
        "ux_status_events_device_report",
        "status_events",
        ["device_id", "report_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ux_status_events_device_report", table_name="status_events")
    op.drop_column("status_events", "report_id")
    op.add_column(
        "devices", sa.Column("tags", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
    )
    conn = op.get_bind()
    by_device: dict[str, list[str]] = {}
    for device_id, tag in conn.execute(sa.text("SELECT device_id, tag FROM device_tags")):
        by_device.setdefault(device_id, []).append(tag)
    for device_id, device_tags in by_device.items():
        conn.execute(
            sa.text("UPDATE devices SET tags = :tags WHERE id = :id"),
            {"tags": json.dumps(sorted(device_tags)), "id": device_id},
        )
    op.drop_index(op.f("ix_device_tags_tag"), table_name="device_tags")
    op.drop_table("device_tags")
