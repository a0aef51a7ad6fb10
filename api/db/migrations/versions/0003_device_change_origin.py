"""device_change.origin: which table the change came from

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:40:00

A change logged by the device table itself may be a claim or a release touching only the
free amounts and status, which a replica's match index applies in place; a change logged
by gpu or infiniband always means the device's document changed and must be re-read.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = {"gpu": "device_id", "infiniband": "device_id"}
_EVENTS = {"INSERT": ("NEW", "new_rows"), "UPDATE": ("NEW", "new_rows"),
           "DELETE": ("OLD", "old_rows")}


def _replace_triggers(with_origin: bool) -> None:
    dialect = op.get_bind().dialect.name
    for table, column in _TABLES.items():
        columns, origin = ("device_id, origin", f", '{table}'") if with_origin else ("device_id", "")
        for event, (row, rows) in _EVENTS.items():
            name = f"trg_{table}_{event.lower()}_log_change"
            if dialect == "postgresql":
                op.execute(f"""
                    CREATE OR REPLACE FUNCTION fn_{table}_{event.lower()}_log_change()
                    RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN
                      INSERT INTO device_change ({columns})
                      SELECT DISTINCT {column}{origin} FROM {rows} WHERE {column} IS NOT NULL;
                      RETURN NULL;
                    END $$""")
            else:
                op.execute(f"DROP TRIGGER IF EXISTS {name}")
                op.execute(f"""
                    CREATE TRIGGER {name} AFTER {event} ON {table}
                    FOR EACH ROW WHEN {row}.{column} IS NOT NULL
                    BEGIN INSERT INTO device_change ({columns})
                          VALUES ({row}.{column}{origin}); END""")


def upgrade() -> None:
    with op.batch_alter_table("device_change") as batch_op:
        batch_op.add_column(
            sa.Column("origin", sa.String(length=16), server_default="device", nullable=False)
        )
    _replace_triggers(with_origin=True)


def downgrade() -> None:
    _replace_triggers(with_origin=False)
    with op.batch_alter_table("device_change") as batch_op:
        batch_op.drop_column("origin")
