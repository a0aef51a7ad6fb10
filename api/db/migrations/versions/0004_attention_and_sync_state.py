"""attention on items, sync_state for the NetBox sync

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 15:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import api.db.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ITEMS = ("device", "switch", "infiniband")


def upgrade() -> None:
    for table in _ITEMS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("attention", sa.JSON(), nullable=True))
    op.create_table(
        "sync_state",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("leader", sa.String(length=255), nullable=True),
        sa.Column("lease_until", api.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_attempt_at", api.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", api.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", api.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("source", name=op.f("pk_sync_state")),
    )


def downgrade() -> None:
    op.drop_table("sync_state")
    for table in _ITEMS:
        if op.get_bind().dialect.name == "sqlite":
            # in place (SQLite 3.35+): a batch copy of the table would lose its triggers
            op.execute(f"ALTER TABLE {table} DROP COLUMN attention")
        else:
            op.drop_column(table, "attention")
