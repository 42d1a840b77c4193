"""Devices' manifest keys: the public key a device signs its version manifests with.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("devices", sa.Column("manifest_key", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("devices", "manifest_key")
