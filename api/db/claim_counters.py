"""The quota counters a claim adds to (api/db/models/quota.py), and the check that no
limit is passed: on PostgreSQL a part of the claim's one statement, on SQLite one upsert
per counter in the claim's transaction.

On PostgreSQL the counters are an upsert CTE, run only when every device was claimed; if
a counter it updated is then past its limit (on what this claim added), the statement
calls ``gpuinv_quota_exceeded()`` (migration 0008), whose error undoes the whole
statement: the claim, its records and the counters. Racing claims on one counter wait for
its row lock, and each is checked against the counter as the other left it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    and_,
    bindparam,
    case,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from api.db.models import QuotaRow

_quota = QuotaRow.__table__
COUNTER_COLUMNS = ["project_key", "model_key", "used_gpus", "used_nodes", "borrowed_gpus"]
_CHECKED_COLUMNS = [
    "project_key",
    "model_key",
    "enforced",
    "gpus",
    "nodes",
    "used_gpus",
    "used_nodes",
]
QUOTA_EXCEEDED_SQLSTATE = "GQ001"  # raised by gpuinv_quota_exceeded() (migration 0008)


def checked(how_many: Any) -> Any:
    """The claim statement's answer: ``how_many`` devices claimed, after the counters were
    added to (when all ``n`` were) and checked."""
    rows = _counter_rows()
    counted = (
        pg_insert(_quota)
        .from_select(
            ["tenant_id", *COUNTER_COLUMNS, "enforced", "updated_at"],
            select(
                bindparam("q_tenant_id", type_=_quota.c.tenant_id.type),
                *(rows.c[name] for name in COUNTER_COLUMNS),
                false(),
                bindparam("now", type_=_quota.c.updated_at.type),
            ).where(how_many == bindparam("n")),
        )
        .on_conflict_do_update(index_elements=_KEY, set_=_added())
        .returning(*(_quota.c[name] for name in _CHECKED_COLUMNS))
        .cte("counted")
    )
    added = _counter_rows()
    over = (
        select(true())
        .select_from(
            counted.join(
                added,
                and_(
                    counted.c.project_key == added.c.project_key,
                    counted.c.model_key == added.c.model_key,
                ),
            )
        )
        .where(
            counted.c.enforced,
            or_(
                and_(
                    added.c.used_gpus > 0,
                    counted.c.gpus.is_not(None),
                    counted.c.used_gpus > counted.c.gpus,
                ),
                and_(
                    added.c.used_nodes > 0,
                    counted.c.nodes.is_not(None),
                    counted.c.used_nodes > counted.c.nodes,
                ),
            ),
        )
        .exists()
    )
    return case((over, func.gpuinv_quota_exceeded()), else_=how_many)


def passes_limit(row: Any, added: dict[str, Any]) -> bool:
    """Whether a counter, just added to, is now beyond its limit on what was added."""
    if not row.enforced:
        return False
    gpus = added["used_gpus"] > 0 and row.gpus is not None and row.used_gpus > row.gpus
    nodes = added["used_nodes"] > 0 and row.nodes is not None and row.used_nodes > row.nodes
    return bool(gpus or nodes)


def _counter_rows() -> Any:
    """The counters a claim adds to, as rows of arrays (``unnest``): one per counter."""
    types = [_quota.c[name].type for name in COUNTER_COLUMNS]
    return (
        func.unnest(
            *(
                bindparam(f"q_{name}", type_=ARRAY(type_))
                for name, type_ in zip(COUNTER_COLUMNS, types, strict=True)
            )
        )
        .table_valued(*COUNTER_COLUMNS)
        .render_derived()
    )


_KEY = ["tenant_id", "project_key", "model_key"]  # the counters' primary key


def _added() -> dict[str, Any]:
    """An upsert's update: each counter plus what the claim adds to it."""
    return {
        name: _quota.c[name] + _excluded(name)
        for name in ("used_gpus", "used_nodes", "borrowed_gpus")
    }


def _excluded(name: str) -> Any:
    """The value an upsert tried to insert (``excluded.<name>``, on both backends)."""
    return literal_column(f"excluded.{name}")


# -- SQLite: one counter at a time, in the claim's transaction -----------------------------
COUNT_ONE = (
    sqlite_insert(_quota)
    .values(
        tenant_id=bindparam("tenant_id"),
        project_key=bindparam("project_key"),
        model_key=bindparam("model_key"),
        used_gpus=bindparam("used_gpus"),
        used_nodes=bindparam("used_nodes"),
        borrowed_gpus=bindparam("borrowed_gpus"),
        enforced=False,
        updated_at=bindparam("now"),
    )
    .on_conflict_do_update(index_elements=_KEY, set_=_added())
    .returning(*(_quota.c[name] for name in _CHECKED_COLUMNS))
)
