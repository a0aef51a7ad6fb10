"""quotas: usage counters per tenant, project and GPU model, with optional limits; an
allocation's preemptible, borrowed, priority and the counters it added to

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 19:30:00

On PostgreSQL, also ``gpuinv_quota_exceeded()``: the claim statement calls it when a limit
would be passed, and the error it raises undoes the whole statement (the claim included),
with no transaction to begin or commit (api/db/claim.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from api.db.base import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

QUOTA_EXCEEDED_FUNCTION = """
CREATE OR REPLACE FUNCTION gpuinv_quota_exceeded() RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'gpuinv: a quota would be passed' USING ERRCODE = 'GQ001';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "quota",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("project_key", sa.String(length=36), nullable=False),
        sa.Column("model_key", sa.String(length=255), nullable=False),
        sa.Column("gpu_model", sa.String(length=255), nullable=True),
        sa.Column("enforced", sa.Boolean(), nullable=False),
        sa.Column("gpus", sa.BigInteger(), nullable=True),
        sa.Column("nodes", sa.Integer(), nullable=True),
        sa.Column("used_gpus", sa.BigInteger(), nullable=False),
        sa.Column("used_nodes", sa.Integer(), nullable=False),
        sa.Column("borrowed_gpus", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "used_gpus >= 0 AND used_nodes >= 0 AND borrowed_gpus >= 0",
            name=op.f("ck_quota_usage_not_negative"),
        ),
        sa.CheckConstraint(
            "(gpus IS NULL OR gpus >= 0) AND (nodes IS NULL OR nodes >= 0)",
            name=op.f("ck_quota_limits_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenant.id"], name=op.f("fk_quota_tenant_id_tenant"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("tenant_id", "project_key", "model_key", name=op.f("pk_quota")),
    )
    # Plain ALTER TABLE ADD COLUMN, on SQLite too (NOT NULL with a default included).
    for name in ("preemptible", "borrowed"):
        op.add_column(
            "allocation", sa.Column(name, sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.add_column(
        "allocation", sa.Column("priority", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("allocation", sa.Column("counted", sa.JSON(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(QUOTA_EXCEEDED_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS gpuinv_quota_exceeded()")
    for column in ("counted", "priority", "borrowed", "preemptible"):
        op.drop_column("allocation", column)
    op.drop_table("quota")
