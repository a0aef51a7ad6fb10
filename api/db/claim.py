"""The claim: its statements, built once and executed on a plain connection.

Every matchDevice runs these, so they are SQLAlchemy Core statements made at import with
bound parameters, not built per request through the ORM: SQLAlchemy then compiles each
once (its compiled cache, keyed by a cache key it also computes once per statement
object) and psycopg prepares it on the server after a few uses. Measured on this
repository's claim UPDATE: 750 µs of CPU per statement through an ORM session, building
the statement each time; 130 µs through a connection with the statement built once; 95 µs
through psycopg directly. The last 35 µs are not worth a second, driver-specific copy of
the claim.

What a claim writes is decided first, in ``Claim``; ``take`` writes it:
- On PostgreSQL, as one statement (the UPDATE and the three INSERTs as data-modifying
  CTEs) on a connection in autocommit: one round trip, no BEGIN or COMMIT. A statement is
  atomic by itself, so a one-device claim needs no transaction; a claim of several devices
  may match some of them and not others, so it runs in a transaction that the caller rolls
  back when ``take`` says the claim was lost.
- On SQLite, as four statements in the transaction the attempt began (BEGIN IMMEDIATE):
  SQLite has no data-modifying CTEs, and its statements cost no round trip.

The database stays the arbiter: the claim is a conditional UPDATE that matches fewer rows
than devices chosen when another request got there first, and the partial unique indexes
refuse a second active allocation for an environment or an exclusive device.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    Connection,
    Engine,
    Update,
    any_,
    bindparam,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.exc import DBAPIError

from api.db import audit, claim_counters, events
from api.db.models import (
    AllocationDeviceRow,
    AllocationRow,
    AuditEventRow,
    DeviceRow,
    EventRow,
    QuotaRow,
)
from api.db.session import DEADLOCK_DETECTED, begin


@dataclass
class Claim:
    """Everything one claim writes, decided before anything is written."""

    device_ids: list[str]
    slice: dict[str, int] | None  # cpu, memory_mb, storage_gb, gpus taken from each; None: whole
    allocation: dict[str, Any]  # the allocation row, by column
    devices: list[dict[str, Any]]  # its allocation_device rows
    event: dict[str, Any]  # its audit_event row
    now: datetime
    # The quota counters it adds to, as rows of COUNTER_COLUMNS; None: counted nowhere (a
    # platform-wide claim).
    counters: list[dict[str, Any]] | None = None
    # Its allocation.created event for the outbox (api/db/events.py), by column.
    outbox: dict[str, Any] | None = None


class Taken(StrEnum):
    """How a claim went."""

    TAKEN = "taken"
    LOST = "lost"  # a device was no longer free: choose again
    OVER_QUOTA = "over quota"  # a quota limit would be passed: nothing was written


def connect(engine: Engine) -> Connection:
    """A connection for claims. On PostgreSQL in autocommit: each read is its own
    transaction, and the claim one statement (see ``take``), so no BEGIN and no COMMIT
    cost a round trip."""
    connection = engine.connect()
    if engine.dialect.name == "postgresql":
        connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection


def begin_attempt(connection: Connection, writing: bool) -> None:
    """Start one attempt's reads. On SQLite a transaction, a writer's (BEGIN IMMEDIATE)
    when it will claim: nobody can then commit between the catch-up and the claim. On
    PostgreSQL nothing: each statement reads what is committed when it runs."""
    if connection.dialect.name != "postgresql":
        begin(connection, writing)


def take(connection: Connection, claim: Claim) -> Taken:
    """Claim every device, record the allocation and add to its quota counters. The
    caller then commits, or on anything but TAKEN rolls back (a transaction may hold some
    of the claims); an IntegrityError means the environment holds an allocation already,
    or a device was taken."""
    if connection.dialect.name == "postgresql":
        return _in_one_statement(connection, claim)
    return _statement_by_statement(connection, claim)


_device = DeviceRow.__table__.c

# A whole node: free only if nothing of it is held; then all of it is. (Which devices:
# added below, as each backend takes a list best.)
_WHOLE = (
    update(DeviceRow.__table__)
    .where(
        _device.status == "available",
        _device.free_cpu == _device.total_cpu,
        _device.free_gpus == _device.total_gpus,
        _device.free_memory_mb == _device.total_memory_mb,
        _device.free_storage_gb == _device.total_storage_gb,
    )
    .values(
        status="allocated",
        free_cpu=0,
        free_memory_mb=0,
        free_storage_gb=0,
        free_gpus=0,
        generation=_device.generation + 1,
        updated_at=bindparam("now"),
    )
)

# A slice: the same amounts taken from each chosen device, if each still has them free.
_SLICE = (
    update(DeviceRow.__table__)
    .where(
        _device.status == "available",
        _device.free_cpu >= bindparam("cpu"),
        _device.free_memory_mb >= bindparam("memory_mb"),
        _device.free_storage_gb >= bindparam("storage_gb"),
        _device.free_gpus >= bindparam("gpus"),
    )
    .values(
        free_cpu=_device.free_cpu - bindparam("cpu"),
        free_memory_mb=_device.free_memory_mb - bindparam("memory_mb"),
        free_storage_gb=_device.free_storage_gb - bindparam("storage_gb"),
        free_gpus=_device.free_gpus - bindparam("gpus"),
        generation=_device.generation + 1,
        updated_at=bindparam("now"),
    )
)

# SQLite: the claim, then the records, each a statement.
_listed = _device.id.in_(bindparam("ids", expanding=True))
CLAIM_WHOLE = _WHOLE.where(_listed)
CLAIM_SLICE = _SLICE.where(_listed)
# inline(): no RETURNING of the new rows' generated ids, which nothing reads.
INSERT_ALLOCATION = insert(AllocationRow.__table__).inline()
INSERT_ALLOCATION_DEVICES = insert(AllocationDeviceRow.__table__).inline()


def _statement_by_statement(connection: Connection, claim: Claim) -> Taken:
    params: dict[str, Any] = {"ids": claim.device_ids, "now": claim.now}
    statement = CLAIM_WHOLE
    if claim.slice is not None:
        statement = CLAIM_SLICE
        params.update(claim.slice)
    if connection.execute(statement, params).rowcount != len(claim.device_ids):
        return Taken.LOST
    connection.execute(INSERT_ALLOCATION, claim.allocation)
    connection.execute(INSERT_ALLOCATION_DEVICES, claim.devices)
    audit.write(connection, claim.event)
    if claim.outbox is not None:
        connection.execute(events.RECORD, claim.outbox)
    for counter in claim.counters or ():
        row = connection.execute(
            claim_counters.COUNT_ONE,
            {**counter, "tenant_id": claim.allocation["tenant_id"], "now": claim.now},
        ).one()
        if claim_counters.passes_limit(row, counter):
            return Taken.OVER_QUOTA
    return Taken.TAKEN


def _in_one_statement(connection: Connection, claim: Claim) -> Taken:
    # In autocommit this statement commits itself: a connection lost while it runs may
    # have committed it. Running the request again is still safe (the view does, on
    # UNAVAILABLE): the environment's allocation then answers it, as a replay.
    if len(claim.device_ids) > 1:
        # Several devices: some may be claimed and others not, which the caller then rolls
        # back. (In autocommit, psycopg commits or rolls back what an explicit BEGIN began.)
        connection.exec_driver_sql("BEGIN")
    params: dict[str, Any] = {"ids": claim.device_ids, "now": claim.now, "n": len(claim.device_ids)}
    params.update({f"a_{name}": value for name, value in claim.allocation.items()})
    params.update({f"e_{name}": value for name, value in claim.event.items()})
    assert claim.outbox is not None  # every claim announces itself (if a webhook listens)
    params.update({f"o_{name}": value for name, value in claim.outbox.items()})
    for name in _HELD_COLUMNS:
        params[f"d_{name}"] = [row[name] for row in claim.devices]
    params["exclusive"] = claim.slice is None
    counting = claim.counters is not None
    if counting:
        params["q_tenant_id"] = claim.allocation["tenant_id"]
        for name in claim_counters.COUNTER_COLUMNS:
            params[f"q_{name}"] = [row[name] for row in claim.counters or ()]
    statement = _STATEMENTS[claim.slice is not None, counting]
    if claim.slice is not None:
        params.update(claim.slice)
    try:
        claimed: int = connection.execute(statement, params).scalar_one()
    except DBAPIError as error:
        state = getattr(error.orig, "sqlstate", None)
        if state == claim_counters.QUOTA_EXCEEDED_SQLSTATE:
            return Taken.OVER_QUOTA  # raised by the statement: it undid all it did
        if state == DEADLOCK_DETECTED:
            return Taken.LOST  # chosen to give way to another writer: nothing written
        raise
    return Taken.TAKEN if claimed == len(claim.device_ids) else Taken.LOST


# -- PostgreSQL: the claim and its records in one statement ------------------------------
_allocation = AllocationRow.__table__
_held = AllocationDeviceRow.__table__
_event = AuditEventRow.__table__
_ALLOCATION_COLUMNS = [c.name for c in _allocation.columns]  # all of them, given
_EVENT_COLUMNS = [c.name for c in _event.columns if c.name != "id"]  # id: generated
_HELD_COLUMNS = ["device_id", "hostname", "position", "cpu", "memory_mb", "storage_gb", "gpus"]
_quota = QuotaRow.__table__
_outbox = EventRow.__table__


def _any_of_ids(statement: Update) -> Update:
    """The claim UPDATE with its devices as one array (``id = ANY(:ids)``), so that its
    text, and the plan PostgreSQL prepared for it, do not change with their number."""
    ids = bindparam("ids", type_=ARRAY(_device.id.type))
    return statement.where(_device.id == any_(ids))


def _claim_and_record(claim_update: Update, counting: bool) -> Any:
    claimed = claim_update.returning(_device.id).cte("claimed")
    how_many = select(func.count()).select_from(claimed).scalar_subquery()
    allocation_values = [
        bindparam(f"a_{name}", type_=_allocation.c[name].type) for name in _ALLOCATION_COLUMNS
    ]
    allocated = (
        insert(_allocation)
        .from_select(
            _ALLOCATION_COLUMNS, select(*allocation_values).where(how_many == bindparam("n"))
        )
        .returning(_allocation.c.id)
        .cte("allocated")
    )
    types = [_held.c[name].type for name in _HELD_COLUMNS]
    rows = (
        func.unnest(
            *(
                bindparam(f"d_{name}", type_=ARRAY(type_))
                for name, type_ in zip(_HELD_COLUMNS, types, strict=True)
            )
        )
        .table_valued(*_HELD_COLUMNS)
        .render_derived()
    )  # AS anon(device_id, hostname, …)
    held = (
        insert(_held)
        .from_select(
            ["allocation_id", *_HELD_COLUMNS, "exclusive", "active"],
            select(
                allocated.c.id,
                *(rows.c[name] for name in _HELD_COLUMNS),
                bindparam("exclusive", type_=_held.c.exclusive.type),
                true(),
            ).select_from(allocated.join(rows, true())),
        )
        .cte("held")
    )
    event_values = [bindparam(f"e_{name}", type_=_event.c[name].type) for name in _EVENT_COLUMNS]
    recorded = (
        insert(_event)
        .from_select(_EVENT_COLUMNS, select(*event_values).select_from(allocated))
        .cte("recorded")
    )
    # The allocation.created event, in the outbox if a webhook may want it.
    outbox_values = [
        bindparam(f"o_{name}", type_=JSON() if name == "data" else _outbox.c[name].type)
        for name in events.EVENT_COLUMNS
    ]
    announced = (
        insert(_outbox)
        .from_select(
            events.EVENT_COLUMNS,
            select(*outbox_values)
            .select_from(allocated)
            .where(events.wanted(bindparam("o_tenant_id", type_=_outbox.c.tenant_id.type))),
        )
        .cte("announced")
    )
    if not counting:
        return select(how_many.label("claimed")).add_cte(held, recorded, announced)
    checked = claim_counters.checked(how_many)
    return select(checked.label("claimed")).add_cte(held, recorded, announced)


# (a slice?, counted against quotas?) -> the statement
_STATEMENTS = {
    (slice_, counting): _claim_and_record(_any_of_ids(update), counting)
    for slice_, update in ((False, _WHOLE), (True, _SLICE))
    for counting in (False, True)
}
