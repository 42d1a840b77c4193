"""Delta updates: the image each device reports in its active slot (the server offers a delta
made from exactly that image), and per deployment target the bytes the server served for it
(all of them, and those of a delta) for the fleet's bytes-sent view.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("image_sha256", sa.String(64), nullable=True))
    for column in ("bytes_sent", "delta_bytes"):
        op.add_column(
            "deployment_targets",
            sa.Column(column, sa.BigInteger(), nullable=False, server_default="0"),
        )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35): a batch copy of ``devices`` would cascade-delete
    # the rows that reference it.
    op.drop_column("deployment_targets", "delta_bytes")
    op.drop_column("deployment_targets", "bytes_sent")
    op.drop_column("devices", "image_sha256")
