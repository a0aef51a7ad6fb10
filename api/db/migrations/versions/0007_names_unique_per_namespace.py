"""names unique per namespace (a tenant, or the platform) instead of fleet-wide

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:00:00

Device and VM hostnames, switch, port and profile names were unique across the whole
inventory, so a tenant could learn that another tenant used a name ("already exists").
Now each is unique within its namespace: two partial unique indexes per table (see
api.db.models.namespace_unique).

SQLite cannot drop a table constraint in place, so there each table is rebuilt by the
procedure of SQLite's documentation ("Making Other Kinds Of Table Schema Changes"): with
foreign keys off, copy into a new table whose CREATE statement is the old one minus the
constraint, drop the old, rename, then re-create its indexes and change-feed triggers
exactly as they were (a batch copy by alembic would lose the triggers, and with foreign
keys on, dropping the device table would cascade into its GPUs, ports and allocations).
"""

import re
from collections.abc import Callable, Sequence
from functools import partial

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the name columns of its old fleet-wide unique constraint
_NAMES = {
    "device": ("kind", "hostname"),
    "switch": ("name",),
    "infiniband": ("name",),
    "profile": ("name",),
}


def _constraint(table: str) -> str:
    return f"uq_{table}_{'_'.join(_NAMES[table])}"


def upgrade() -> None:
    if _sqlite():
        with _foreign_keys_off():
            for table in _NAMES:
                _rebuild(table, partial(_without_constraint, name=_constraint(table)))
    else:
        for table in _NAMES:
            op.drop_constraint(_constraint(table), table, type_="unique")
    for table, columns in _NAMES.items():
        # What the fleet-wide unique constraint's index did for lists ordered by name and
        # for lookups by name across namespaces (the partial indexes serve one namespace).
        op.create_index(f"ix_{table}_name", table, list(columns))
        where = "tenant_id IS NOT NULL"
        op.create_index(
            f"uq_{table}_tenant_name",
            table,
            ["tenant_id", *columns],
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
        where = "tenant_id IS NULL"
        op.create_index(
            f"uq_{table}_platform_name",
            table,
            list(columns),
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )


def downgrade() -> None:
    _refuse_names_shared_across_namespaces()
    for table in _NAMES:
        op.drop_index(f"ix_{table}_name", table_name=table)
        op.drop_index(f"uq_{table}_platform_name", table_name=table)
        op.drop_index(f"uq_{table}_tenant_name", table_name=table)
    if _sqlite():
        with _foreign_keys_off():
            for table, columns in _NAMES.items():
                clause = f"CONSTRAINT {_constraint(table)} UNIQUE ({', '.join(columns)})"
                _rebuild(table, partial(_with_clause, clause=clause))
    else:
        for table, columns in _NAMES.items():
            op.create_unique_constraint(_constraint(table), table, list(columns))


def _refuse_names_shared_across_namespaces() -> None:
    """Before 0007 a name was fleet-wide: say which names two namespaces share, rather
    than fail half-way on a unique constraint."""
    bind = op.get_bind()
    for table, columns in _NAMES.items():
        names = ", ".join(columns)
        shared = bind.exec_driver_sql(
            f"SELECT {names} FROM {table} GROUP BY {names} HAVING count(*) > 1 LIMIT 3"
        ).all()
        if shared:
            listed = ", ".join(repr(row[-1]) for row in shared)
            raise RuntimeError(
                f"cannot downgrade below 0007: {table} names used in more than one "
                f"namespace ({listed}); rename them so that each is unique fleet-wide first"
            )


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


class _foreign_keys_off:
    """PRAGMA foreign_keys takes effect only outside a transaction: end the migration's
    transaction, switch the checks off, and go on in a new one; afterwards check every
    reference (PRAGMA foreign_key_check) before switching them back on."""

    def __enter__(self) -> None:
        bind = op.get_bind()
        bind.exec_driver_sql("COMMIT")
        bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
        bind.exec_driver_sql("BEGIN")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        bind = op.get_bind()
        if kind is None:
            broken = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"0007 left broken references: {broken[:3]}")
            bind.exec_driver_sql("COMMIT")
        else:
            bind.exec_driver_sql("ROLLBACK")
        bind.exec_driver_sql("PRAGMA foreign_keys=ON")
        bind.exec_driver_sql("BEGIN")


def _rebuild(table: str, change: Callable[[str], str]) -> None:
    """Re-create ``table`` from its own CREATE statement as ``change`` rewrites it, keeping
    its rows, indexes and triggers."""
    bind = op.get_bind()
    create = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    keep = (
        bind.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type",  # indexes before triggers
            (table,),
        )
        .scalars()
        .all()
    )
    new_create = change(create)
    head = re.match(rf"CREATE TABLE \"?{table}\"? \(", new_create)
    if head is None:
        raise RuntimeError(f"unexpected CREATE TABLE for {table}: {create[:80]!r}")
    bind.exec_driver_sql(f"CREATE TABLE _new_{table} (" + new_create[head.end() :])
    bind.exec_driver_sql(f"INSERT INTO _new_{table} SELECT * FROM {table}")
    bind.exec_driver_sql(f"DROP TABLE {table}")
    bind.exec_driver_sql(f"ALTER TABLE _new_{table} RENAME TO {table}")
    for statement in keep:
        bind.exec_driver_sql(statement)


def _without_constraint(create: str, name: str) -> str:
    pattern = rf",\s*CONSTRAINT \"?{name}\"? UNIQUE \([^)]*\)"
    changed, count = re.subn(pattern, "", create)
    if count != 1:
        raise RuntimeError(f"constraint {name} not found in {create[:80]!r}…")
    return changed


def _with_clause(create: str, clause: str) -> str:
    body = create.rstrip()
    if not body.endswith(")"):
        raise RuntimeError(f"unexpected CREATE TABLE ending: {body[-40:]!r}")
    return f"{body[:-1].rstrip()}, \n\t{clause}\n)"
