"""ix_allocation_preempted serves the queries that count preempted allocations: /metrics'
gpuinv_allocations_preempted_total on every scrape, and allocations(filter: {state:
PREEMPTED}). Released allocations are kept, so a query the index cannot serve reads the
whole history. A partial index serves only a query whose condition implies its own: this
checks the planner can use it for the query as the code builds it, on both backends
(PostgreSQL with sequential scans discouraged, since a small table is cheaper to scan)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select, text

from api.db.allocation_query import in_state
from api.db.models import AllocationRow
from api.domain.preemption import AllocationState

INDEX = "ix_allocation_preempted"


def _plan(engine: Engine, statement: Any) -> str:
    """The planner's plan for ``statement`` as the code sends it: its value bound."""
    compiled = statement.compile(dialect=engine.dialect)
    params: Any = compiled.params
    if compiled.positiontup is not None:  # SQLite's ? placeholders
        params = tuple(compiled.params[name] for name in compiled.positiontup)
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", params).all()
        else:
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
        connection.rollback()
    return "\n".join(str(row[-1]) for row in rows)


def test_the_preempted_count_by_tenant_reads_the_partial_index(engine: Engine) -> None:
    count = (
        select(AllocationRow.tenant_id, func.count())
        .where(in_state(AllocationState.PREEMPTED))
        .group_by(AllocationRow.tenant_id)
    )
    assert INDEX in _plan(engine, count)
