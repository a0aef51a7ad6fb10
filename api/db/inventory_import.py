"""Apply a parsed import batch: upsert by name, all or nothing, audited item by item.

New devices take a bulk path (a few executemany INSERTs for the whole batch) because a
first import of a fleet is the common large case; updates go through the same per-item
``write_spec`` as the GraphQL mutations, with documents rendered in bulk beforehand.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from api.db import audit, device, infiniband, switch
from api.db.base import new_id, utcnow
from api.db.models import DeviceRow, GpuRow, InfinibandRow, SwitchRow
from api.db.session import insert_rows
from api.db.tenant import Directory
from api.domain.access import Principal
from api.domain.document import DeviceSpec, InfinibandSpec, SwitchSpec, infiniband_name
from api.domain.errors import FieldError, InvalidField, bulk_input_error
from api.domain.inventory_import import ImportBatch

CHUNK = 500
Progress = Callable[[int], None]


@dataclass
class ImportCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def import_batch(
    session: Session, who: Principal, batch: ImportBatch, progress: Progress | None = None
) -> ImportCounts:
    who.require_inventory_write()
    directory = Directory.load(session)
    counts = ImportCounts()
    errors: list[FieldError] = []
    tick = progress or (lambda n: None)
    rows_of: dict[int, tuple[str, int]] = {}
    for section, specs in (
        ("switches", batch.switches),
        ("devices", batch.devices),
        ("vms", batch.vms),
        ("infinibands", batch.infinibands),
    ):
        for position, spec in enumerate(specs, start=1):
            rows_of[id(spec)] = (section, position)
    _import_switches(session, who, directory, batch.switches, counts, errors, rows_of, tick)
    for specs in (batch.devices, batch.vms):
        _import_devices(session, who, directory, specs, counts, errors, rows_of, tick)
    _import_infinibands(session, who, directory, batch.infinibands, counts, errors, rows_of, tick)
    if errors:
        raise bulk_input_error(errors)
    return counts


def _error(
    errors: list[FieldError],
    rows_of: dict[int, tuple[str, int]],
    spec: Any,
    field: str,
    message: str,
) -> None:
    section, row = rows_of[id(spec)]
    errors.append(FieldError(row, field, message, section))


def _import_devices(
    session: Session,
    who: Principal,
    directory: Directory,
    specs: Sequence[DeviceSpec],
    counts: ImportCounts,
    errors: list[FieldError],
    rows_of: dict[int, tuple[str, int]],
    tick: Progress,
) -> None:
    for start in range(0, len(specs), CHUNK):
        chunk = specs[start : start + CHUNK]
        kind = chunk[0].kind.value
        namespaces = _namespaces(who, directory, chunk, errors, rows_of)
        query = select(DeviceRow).where(
            DeviceRow.kind == kind, DeviceRow.hostname.in_([s.hostname for s in chunk])
        )
        # Same-name devices of other namespaces come back too and are simply never
        # matched: names are unique per namespace (a tenant, or the platform).
        existing = {(d.tenant_id, d.hostname): d for d in session.scalars(query)}
        wanted = {(namespaces[id(s)], s.hostname) for s in chunk if id(s) in namespaces}
        existing = {key: row for key, row in existing.items() if key in wanted}
        before = dict(
            zip(
                existing,
                device.documents(session, list(existing.values()), directory),
                strict=True,
            )
        )
        new_specs = []
        for spec in chunk:
            if id(spec) not in namespaces:
                continue  # its tenant is refused; reported by _namespaces
            key = (namespaces[id(spec)], spec.hostname)
            current = existing.get(key)
            if current is None:
                new_specs.append(spec)
                continue
            try:
                written = device.write_spec(session, who, directory, spec, current, before[key])
            except InvalidField as exc:
                _error(errors, rows_of, spec, exc.field, exc.message)
                continue
            if written.action == "unchanged":
                counts.unchanged += 1
            else:
                counts.updated += 1
                device.record_write(session, who, written)
        _create_devices(session, who, directory, new_specs, counts, errors, rows_of)
        tick(len(chunk))


def _namespaces(
    who: Principal,
    directory: Directory,
    specs: Sequence[Any],
    errors: list[FieldError],
    rows_of: dict[int, tuple[str, int]],
) -> dict[int, str | None]:
    """Each spec's namespace (by ``id(spec)``): its document's tenant, else the caller's;
    None is the platform. A tenant the caller may not write to is a row error."""
    found: dict[int, str | None] = {}
    for spec in specs:
        try:
            found[id(spec)] = directory.namespace(who, spec.tenant)
        except InvalidField as exc:
            _error(errors, rows_of, spec, exc.field, exc.message)
    return found


def _create_devices(
    session: Session,
    who: Principal,
    directory: Directory,
    specs: Sequence[DeviceSpec],
    counts: ImportCounts,
    errors: list[FieldError],
    rows_of: dict[int, tuple[str, int]],
) -> None:
    now = utcnow()
    device_rows: list[dict[str, Any]] = []
    gpu_rows: list[dict[str, Any]] = []
    port_rows: list[dict[str, Any]] = []
    audit_rows: list[dict[str, Any]] = []
    taken = _taken_port_names(
        session, [infiniband_name(s.hostname, p.name) for s in specs for p in s.infiniband or ()]
    )  # (namespace, name) pairs
    for spec in specs:
        try:
            tenant_id, project_id = directory.resolve(who, spec.tenant, spec.project)
        except InvalidField as exc:
            _error(errors, rows_of, spec, exc.field, exc.message)
            continue
        clash = [
            n
            for n in (infiniband_name(spec.hostname, p.name) for p in spec.infiniband or ())
            if (tenant_id, n) in taken
        ]
        if clash:  # held by another port, e.g. of a switch or VM of the same name
            _error(errors, rows_of, spec, "infiniband", f"port {clash[0]!r} is taken")
            continue
        row = {
            "id": new_id(),
            "kind": spec.kind.value,
            "hostname": spec.hostname,
            "status": (spec.status.value if spec.status else "available"),
            **device.columns(spec, tenant_id, project_id, in_use={}),
            "generation": 1,
            "created_at": now,
            "updated_at": now,
        }
        device_rows.append(row)
        gpu_rows.extend(device.gpu_row(row["id"], g) for g in spec.gpus)
        port_rows.extend(
            infiniband.new_port(spec.hostname, row["id"], p, tenant_id, project_id)
            | {"id": new_id(), "generation": 1, "created_at": now, "updated_at": now}
            for p in spec.infiniband or ()
        )
        ports = [p.document() for p in spec.infiniband or ()]
        after = device.render_new(row, spec, ports, directory)
        audit_rows.append(
            audit.audit_row(
                who, "create", spec.kind.value, row["id"], spec.hostname, tenant_id, None, after
            )
        )
    if errors:
        return  # the transaction is rolled back anyway; skip the writes
    for table, rows in ((DeviceRow, device_rows), (GpuRow, gpu_rows), (InfinibandRow, port_rows)):
        insert_rows(session, table.__table__, rows)
    audit.record_many(session, audit_rows)
    counts.created += len(device_rows)


def _taken_port_names(session: Session, names: Sequence[str]) -> set[tuple[str | None, str]]:
    """Which of these port names are held, as (namespace, name): a port name is unique
    within its namespace only."""
    taken: set[tuple[str | None, str]] = set()
    for start in range(0, len(names), 900):
        chunk = names[start : start + 900]
        query = select(InfinibandRow.tenant_id, InfinibandRow.name).where(
            InfinibandRow.name.in_(chunk)
        )
        taken.update((tenant_id, name) for tenant_id, name in session.execute(query))
    return taken


def _import_switches(
    session: Session,
    who: Principal,
    directory: Directory,
    specs: Sequence[SwitchSpec],
    counts: ImportCounts,
    errors: list[FieldError],
    rows_of: dict[int, tuple[str, int]],
    tick: Progress,
) -> None:
    _import_flat(session, who, directory, specs, SwitchRow, switch, counts, errors, rows_of, tick)


def _import_infinibands(
    session: Session,
    who: Principal,
    directory: Directory,
    specs: Sequence[InfinibandSpec],
    counts: ImportCounts,
    errors: list[FieldError],
    rows_of: dict[int, tuple[str, int]],
    tick: Progress,
) -> None:
    _import_flat(
        session, who, directory, specs, InfinibandRow, infiniband, counts, errors, rows_of, tick
    )


def _import_flat(
    session: Session,
    who: Principal,
    directory: Directory,
    specs: Sequence[Any],
    model: Any,
    module: Any,
    counts: ImportCounts,
    errors: list[FieldError],
    rows_of: dict[int, tuple[str, int]],
    tick: Progress,
) -> None:
    """Switches and InfiniBand ports: few per fleet, so the per-item path is fast enough."""
    kind = model.__tablename__
    for start in range(0, len(specs), CHUNK):
        chunk = specs[start : start + CHUNK]
        namespaces = _namespaces(who, directory, chunk, errors, rows_of)
        query = select(model).where(model.name.in_([s.name for s in chunk]))
        existing = {(item.tenant_id, item.name): item for item in session.scalars(query)}
        for spec in chunk:
            if id(spec) not in namespaces:
                continue  # its tenant is refused; reported by _namespaces
            current = existing.get((namespaces[id(spec)], spec.name))
            before = module.render(current, directory) if current is not None else None
            try:
                item, changed = module.write_spec(session, who, directory, spec, current)
            except InvalidField as exc:
                _error(errors, rows_of, spec, exc.field, exc.message)
                continue
            if not changed:
                counts.unchanged += 1
                continue
            if current is None:
                counts.created += 1
            else:
                counts.updated += 1
            audit.record(
                session,
                who,
                "update" if current else "create",
                kind,
                item.id,
                item.name,
                item.tenant_id,
                before,
                module.render(item, directory),
            )
        tick(len(chunk))


# Above this many written items, refresh the planner's statistics: after a first bulk
# import the tables are "empty" to the planner, which then picks nested-loop plans that
# are fine for 10 rows and take minutes for 100,000 (seen at 100k devices on PostgreSQL).
ANALYZE_AFTER = 1000


def refresh_statistics(engine: Engine, counts: ImportCounts) -> None:
    """Refresh the planner's statistics after a large import (after the import's commit,
    on connections of its own: it takes the pool, not a session).

    On PostgreSQL this is VACUUM (ANALYZE): besides statistics, it marks the new pages
    all-visible, so that capacity views are index-only scans of ix_device_capacity rather
    than a sort of every row (25 against 150 ms at 100k devices). It skips pages already
    all-visible, so repeated imports pay for their new rows only."""
    if counts.created + counts.updated < ANALYZE_AFTER:
        return
    tables = "device, gpu, infiniband, switch"
    if engine.dialect.name == "postgresql":
        # VACUUM cannot run in a transaction: autocommit.
        with engine.connect() as connection:
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                f"VACUUM (ANALYZE) {tables}"
            )
        return
    with engine.begin() as connection:
        for table in tables.split(", "):
            connection.exec_driver_sql(f"ANALYZE {table}")
