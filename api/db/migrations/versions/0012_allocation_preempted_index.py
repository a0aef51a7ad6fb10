"""allocation preempted index

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 02:20:00

A partial index over the allocations released by preemption, by tenant: /metrics counts
them on every scrape (gpuinv_allocations_preempted_total), and released allocations are
kept, so without it each scrape read the whole history.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PREEMPTED = sa.text("released_by = 'system:preemption'")


def upgrade() -> None:
    with op.batch_alter_table('allocation', schema=None) as batch_op:
        batch_op.create_index(
            'ix_allocation_preempted',
            ['tenant_id'],
            unique=False,
            postgresql_where=PREEMPTED,
            sqlite_where=PREEMPTED,
        )


def downgrade() -> None:
    with op.batch_alter_table('allocation', schema=None) as batch_op:
        batch_op.drop_index('ix_allocation_preempted', postgresql_where=PREEMPTED, sqlite_where=PREEMPTED)
