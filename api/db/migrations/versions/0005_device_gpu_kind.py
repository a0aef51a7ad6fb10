"""device.gpu_vendor / gpu_model: what all a device's GPUs are, for capacity views

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Devices whose GPUs are all of one vendor and model get that pair; the rest keep null.
_BACKFILL = """
UPDATE device SET
  gpu_vendor = (SELECT min(vendor_code) FROM gpu WHERE gpu.device_id = device.id),
  gpu_model = (SELECT min(model_no) FROM gpu WHERE gpu.device_id = device.id)
WHERE (SELECT count(DISTINCT vendor_code || '/' || model_no) FROM gpu
       WHERE gpu.device_id = device.id) = 1
"""


def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy of the table, which would lose its triggers).
    op.add_column("device", sa.Column("gpu_vendor", sa.String(length=255), nullable=True))
    op.add_column("device", sa.Column("gpu_model", sa.String(length=255), nullable=True))
    op.execute(_BACKFILL)


def downgrade() -> None:
    for column in ("gpu_model", "gpu_vendor"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE device DROP COLUMN {column}")  # in place, triggers kept
        else:
            op.drop_column("device", column)
