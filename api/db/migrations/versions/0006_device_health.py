"""device.health and .healthy: GPU and link health; the covering index of capacity views

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_CAPACITY_COLUMNS = [
    "kind",
    "site",
    "tenant_id",
    "gpu_vendor",
    "gpu_model",
    "status",
    "healthy",
    "total_cpu",
    "free_cpu",
    "total_memory_mb",
    "free_memory_mb",
    "total_storage_gb",
    "free_storage_gb",
    "total_gpus",
    "free_gpus",
]


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN (SQLite has it, NOT NULL with a default included): a
    # batch operation would copy the table and lose its change-feed triggers.
    op.add_column("device", sa.Column("health", sa.JSON(none_as_null=True), nullable=True))
    op.add_column(
        "device", sa.Column("healthy", sa.Boolean(), server_default=sa.text("true"), nullable=False)
    )
    op.create_index("ix_device_capacity", "device", _CAPACITY_COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_device_capacity", table_name="device")
    for column in ("healthy", "health"):
        _drop_column(column)


def _drop_column(column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite 3.35+ drops a column in place; alembic's batch mode would copy the table
        # and lose its change-feed triggers.
        op.execute(f"ALTER TABLE device DROP COLUMN {column}")
    else:
        op.drop_column("device", column)
