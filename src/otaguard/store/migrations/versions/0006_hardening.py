"""Hardening (issue 11): per-(account, address) login throttle, separation-of-duties facts on
operators, and each device's last accepted signed manifest (clock, nonce) against replay.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_name"],
            ["users.name"],
            name=op.f("fk_login_throttle_user_name_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_name", "client", name=op.f("pk_login_throttle")),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("managed_by", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("reset_by", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column(
                "password_set_by_other", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("manifest_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("manifest_nonce", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("manifest_nonce")
        batch.drop_column("manifest_at")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_set_by_other")
        batch.drop_column("reset_by")
        batch.drop_column("managed_by")
    op.drop_table("login_throttle")
