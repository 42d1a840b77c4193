"""Hardening (issue 11): per-(account, address) login throttle, separation-of-duties facts on
operators, each device's last accepted signed manifest (clock, nonce) against replay, and
the audit entries' MAC under a key kept outside the database.

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
    # plain ALTER TABLE (no batch: recreating a table on SQLite would cascade to its children)
    op.add_column("users", sa.Column("managed_by", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column("users", sa.Column("reset_by", sa.JSON(), nullable=False, server_default="[]"))
    op.add_column(
        "users",
        sa.Column("password_set_by_other", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column("devices", sa.Column("manifest_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("devices", sa.Column("manifest_nonce", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("mac", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_log", "mac")
    for column in ("manifest_nonce", "manifest_at"):
        op.drop_column("devices", column)
    for column in ("password_set_by_other", "reset_by", "managed_by"):
        op.drop_column("users", column)
    op.drop_table("login_throttle")
