"""Each device's highest accepted manifest sequence number (issue 11: replay refusal that does
not depend on the device's clock; ``store/replay.py`` ``is_replay``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy): on SQLite a table copy of ``devices`` would cascade
    # into ``device_tags``. NULL for every device: none has sent a sequence yet.
    op.add_column("devices", sa.Column("manifest_sequence", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "manifest_sequence")
