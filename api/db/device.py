"""Devices and VMs: rendering to the device document, listing, and writing specs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session

from api.db import audit, infiniband
from api.db.base import utcnow
from api.db.items import assign, assign_status, source_document
from api.db.models import DeviceRow, GpuRow
from api.db.paging import Page, keyset_page
from api.db.scope import pooled
from api.db.tenant import Directory, tenant_by_slug
from api.domain.access import Principal
from api.domain.document import DeviceSpec, IbPort
from api.domain.document import Gpu as GpuSpec
from api.domain.errors import InvalidField, bad_input
from api.domain.fields import CAPACITY, HARDWARE, MACHINE_FACTS, PLACEMENT, VM_PLACEMENT
from api.domain.vocabulary import Kind, Status

# The facts a spec sets directly, column by column (capacity apart: free follows total).
_SET_DIRECTLY = tuple(f.attribute for f in MACHINE_FACTS if f.free is None)


def render(
    device: DeviceRow,
    gpus: Sequence[GpuSpec],
    ports: Sequence[dict[str, Any]],
    directory: Directory,
) -> dict[str, Any]:
    """The device document of DESIGN.md: the import format and the device_details shape."""
    return _document(
        device.kind,
        {"id": device.id, "hostname": device.hostname, "kind": device.kind},
        device.status,
        lambda attribute: getattr(device, attribute),
        gpus,
        dict(device.tags or {}),
        ports,
        {
            "tenant": directory.tenant(device.tenant_id),
            "project": directory.project_slug(device.project_id),
            "source": source_document(device),
        },
    )


def render_new(
    row: dict[str, Any], spec: DeviceSpec, ports: Sequence[dict[str, Any]], directory: Directory
) -> dict[str, Any]:
    """The document of a device the bulk import is about to insert as ``row`` (its
    columns, from ``columns``): as ``render`` would give it once written."""
    return _document(
        row["kind"],
        {"id": row["id"], "hostname": row["hostname"], "kind": row["kind"]},
        row["status"],
        row.__getitem__,
        spec.gpus,
        dict(spec.tags),
        ports,
        {
            "tenant": directory.tenant(row["tenant_id"]),
            "project": directory.project_slug(row["project_id"]),
            "source": spec.source.document(),
        },
    )


def _document(
    kind: str,
    head: dict[str, Any],
    status: str,
    fact: Any,
    gpus: Sequence[GpuSpec],
    tags: dict[str, str],
    ports: Sequence[dict[str, Any]],
    owner: dict[str, Any],
) -> dict[str, Any]:
    """The document in its order (api/domain/fields.py): ``fact(attribute)`` reads a fact."""
    document = head | {"status": status}
    document |= {f.key: fact(f.attribute) for f in HARDWARE}
    document |= {"gpus": [g.document() for g in gpus], "tags": tags}
    document |= {f.key: fact(f.attribute) for f in PLACEMENT}
    document |= {"infiniband": list(ports)} | owner
    if kind == Kind.VM:
        document |= {f.key: fact(f.attribute) for f in VM_PLACEMENT}
    return document


def columns(
    spec: DeviceSpec, tenant_id: str | None, project_id: str | None, in_use: dict[str, int]
) -> dict[str, Any]:
    """The device row's columns a spec decides, for both write paths (write_spec, one
    device at a time, and the bulk import): its facts, free amounts (its totals less
    ``in_use``, what allocations hold), GPU summary, tags, ownership and source. Raises
    InvalidField when a total would fall below what is in use."""
    values = {attribute: spec.facts[attribute] for attribute in _SET_DIRECTLY}
    for fact in CAPACITY:
        total, held = spec.facts[fact.attribute], in_use.get(fact.attribute, 0)
        if total < held:
            raise InvalidField(fact.key, f"cannot shrink to {total}: {held} are allocated")
        values[fact.attribute] = total
        values[fact.free] = total - held  # type: ignore[index]  # a CAPACITY fact has a free
    return values | {
        "gpu_vendor": spec.gpu_vendor,
        "gpu_model": spec.gpu_model,
        "tags": dict(spec.tags),
        "tenant_id": tenant_id,
        "project_id": project_id,
        "source_system": spec.source.system.value,
        "source_id": spec.source.id,
        "source_url": spec.source.url,
    }


def load_gpus(session: Session, device_ids: Sequence[str]) -> dict[str, tuple[GpuSpec, ...]]:
    # Plain column tuples, not ORM objects: a page of 50 servers has 400 GPUs, and
    # building 400 tracked objects was the largest cost of a page.
    columns = (
        GpuRow.device_id,
        GpuRow.index,
        GpuRow.vendor_code,
        GpuRow.model_no,
        GpuRow.memory_mb,
    )
    found: dict[str, list[GpuSpec]] = defaultdict(list)
    for start in range(0, len(device_ids), 900):
        chunk = device_ids[start : start + 900]
        query = (
            select(*columns)
            .where(GpuRow.device_id.in_(chunk))
            .order_by(GpuRow.device_id, GpuRow.index)
        )
        for device_id, index, vendor, model_no, memory in session.execute(query):
            found[device_id].append(GpuSpec(index, vendor, model_no, memory))
    return {device_id: tuple(found.get(device_id, ())) for device_id in device_ids}


def documents(
    session: Session, devices: Sequence[DeviceRow], directory: Directory | None = None
) -> list[dict[str, Any]]:
    """Render many devices with two extra queries in all (GPUs, ports), not two per device."""
    directory = directory or Directory.load(session)
    gpus = load_gpus(session, [d.id for d in devices])
    ports = infiniband.ports_by_device(session, [d.id for d in devices])
    return [
        render(d, gpus[d.id], [infiniband.port_entry(p) for p in ports.get(d.id, ())], directory)
        for d in devices
    ]


@dataclass
class DeviceFilter:
    kinds: list[str] = field(default_factory=lambda: [Kind.BAREMETAL.value])
    statuses: list[str] | None = None
    tenant: str | None = None  # a slug; another tenant's reads as unknown
    tags: dict[str, str] | None = None
    gpu_vendor: str | None = None
    gpu_model: str | None = None
    sites: list[str] | None = None
    hostname_prefix: str | None = None
    min_free_gpus: int | None = None
    min_free_cpu: int | None = None
    min_free_memory_mb: int | None = None
    min_free_storage_gb: int | None = None

    def __post_init__(self) -> None:
        # Named as the schema spells them: the client never sees the Python names.
        for name, label in (
            ("min_free_gpus", "minFreeGpus"),
            ("min_free_cpu", "minFreeCpu"),
            ("min_free_memory_mb", "minFreeMemoryMB"),
            ("min_free_storage_gb", "minFreeStorageGB"),
        ):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise bad_input(
                    f"filter.{label}: must not be negative, got {value}", field=f"filter.{label}"
                )


ORDER_COLUMNS = {
    "hostname": DeviceRow.hostname,
    "created_at": DeviceRow.created_at,
    "updated_at": DeviceRow.updated_at,
    "free_gpus": DeviceRow.free_gpus,
    "total_gpus": DeviceRow.total_gpus,
}


def list_devices(
    session: Session,
    who: Principal,
    spec: DeviceFilter,
    order: str,
    descending: bool,
    first: int,
    after: str | None,
) -> Page:
    query = pooled(
        select(DeviceRow).where(DeviceRow.kind.in_(spec.kinds)), DeviceRow.tenant_id, who
    )
    if spec.statuses:
        query = query.where(DeviceRow.status.in_(spec.statuses))
    if spec.tenant is not None:
        query = query.where(DeviceRow.tenant_id == tenant_by_slug(session, who, spec.tenant).id)
    if spec.sites:
        query = query.where(DeviceRow.site.in_(spec.sites))
    if spec.hostname_prefix:
        query = query.where(DeviceRow.hostname.startswith(spec.hostname_prefix, autoescape=True))
    for key, value in (spec.tags or {}).items():
        query = query.where(DeviceRow.tags[key].as_string() == value)
    if spec.gpu_vendor or spec.gpu_model:
        gpu = exists().where(GpuRow.device_id == DeviceRow.id)
        if spec.gpu_vendor:
            gpu = gpu.where(GpuRow.vendor_code == spec.gpu_vendor.strip().upper())
        if spec.gpu_model:
            gpu = gpu.where(func.lower(GpuRow.model_no) == spec.gpu_model.strip().lower())
        query = query.where(gpu)
    for column, minimum in (
        (DeviceRow.free_gpus, spec.min_free_gpus),
        (DeviceRow.free_cpu, spec.min_free_cpu),
        (DeviceRow.free_memory_mb, spec.min_free_memory_mb),
        (DeviceRow.free_storage_gb, spec.min_free_storage_gb),
    ):
        if minimum is not None:
            query = query.where(column >= minimum)
    return keyset_page(session, query, DeviceRow.id, ORDER_COLUMNS[order], descending, first, after)


@dataclass
class Written:
    """The outcome of writing one spec: the row, and what the audit log should say."""

    item: Any
    action: str  # "create" | "update" | "unchanged"
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def write_spec(
    session: Session,
    who: Principal,
    directory: Directory,
    spec: DeviceSpec,
    existing: DeviceRow | None,
    before: dict[str, Any] | None,
) -> Written:
    """Create or update one device from a spec. Never touches allocation state.

    ``before`` is the stored document of ``existing`` (callers render many at once).
    Raises InvalidField for problems that depend on stored state (tenant,
    capacity below what is allocated), so bulk callers can attach row numbers.
    """
    current = (existing.tenant_id, existing.project_id) if existing else (None, None)
    tenant_id, project_id = directory.resolve(who, spec.tenant, spec.project, current)
    device = existing or DeviceRow(
        kind=spec.kind.value, hostname=spec.hostname, status=Status.AVAILABLE.value
    )
    in_use = {  # f.free: every CAPACITY fact has a free column (Fact.free is str | None)
        f.attribute: getattr(device, f.attribute) - getattr(device, f.free)  # type: ignore[arg-type]
        for f in CAPACITY
        if existing is not None
    }
    values = columns(spec, tenant_id, project_id, in_use)
    changes = [assign(device, column, value) for column, value in values.items()]
    changes.append(assign_status(device, spec))
    gpus = [g.document() for g in spec.gpus]
    gpus_changed = before is None or before["gpus"] != gpus
    ports = before["infiniband"] if before is not None else []
    port_specs = spec.infiniband
    if port_specs is None and existing is not None and (tenant_id, project_id) != current:
        # The document leaves the ports alone, but they belong to the device: they follow
        # it to its new tenant and project (a machine's ports share its tenant).
        port_specs = tuple(IbPort.from_document(p) for p in ports)
    if existing is None:
        session.add(device)
        session.flush()  # assigns the id the ports and GPUs refer to
    ports_changed = False
    if port_specs is not None:
        ports = [p.document() for p in port_specs]
        ports_changed = infiniband.replace_device_ports(
            session, who, device, port_specs, tenant_id, project_id
        )
    if existing is not None:
        if not (any(changes) or gpus_changed or ports_changed):
            return Written(device, "unchanged", before, before)
        if not any(changes):
            device.updated_at = utcnow()  # the document changed: bump generation and time
        session.flush()  # StaleDataError here means a lost race
    if gpus_changed:
        if existing is not None:
            session.execute(delete(GpuRow).where(GpuRow.device_id == device.id))
        if spec.gpus:
            session.execute(insert(GpuRow), [gpu_row(device.id, g) for g in spec.gpus])
    after = render(device, spec.gpus, ports, directory)
    return Written(device, "create" if existing is None else "update", before, after)


def gpu_row(device_id: str, gpu: GpuSpec) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "index": gpu.index,
        "vendor_code": gpu.vendor_code,
        "model_no": gpu.model_no,
        "memory_mb": gpu.memory_mb,
    }


def record_write(session: Session, who: Principal, written: Written) -> None:
    if written.action == "unchanged":
        return
    device = written.item
    audit.record(
        session,
        who,
        written.action,
        device.kind,
        device.id,
        device.hostname,
        device.tenant_id,
        written.before,
        written.after,
    )
