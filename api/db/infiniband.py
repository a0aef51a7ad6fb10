"""InfiniBand ports (on servers and on switches): named ``<device>:<port>``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from api.db import audit
from api.db.items import assign, assign_common, source_document
from api.db.models import DeviceRow, InfinibandRow, SwitchRow
from api.db.paging import Page, keyset_page
from api.db.scope import in_namespace, scoped
from api.db.tenant import Directory
from api.domain.access import Principal
from api.domain.document import IbPort, InfinibandSpec, infiniband_name
from api.domain.errors import InvalidField
from api.domain.fields import PORT_FACTS
from api.domain.vocabulary import SourceSystem, Status


def facts_of(port: InfinibandRow) -> dict[str, Any]:
    """A port row's facts (PORT_FACTS) by document key."""
    return {f.key: getattr(port, f.attribute) for f in PORT_FACTS}


def port_entry(port: InfinibandRow) -> dict[str, Any]:
    """A port as the device document lists it."""
    return {"name": port.port, **facts_of(port)}


def render(port: InfinibandRow, directory: Directory) -> dict[str, Any]:
    return {
        "id": port.id,
        "kind": "infiniband",
        "name": port.name,
        "device": port.device,
        "port": port.port,
        "status": port.status,
        **facts_of(port),
        "tags": dict(port.tags or {}),
        "tenant": directory.tenant(port.tenant_id),
        "project": directory.project_slug(port.project_id),
        "source": source_document(port),
    }


def ports_by_device(session: Session, device_ids: Sequence[str]) -> dict[str, list[InfinibandRow]]:
    """The ports of many machines at once (one query per 900 machines)."""
    found: dict[str, list[InfinibandRow]] = defaultdict(list)
    unique = sorted(set(device_ids))
    for start in range(0, len(unique), 900):
        query = select(InfinibandRow).where(
            InfinibandRow.device_id.in_(unique[start : start + 900])
        )
        for port in session.scalars(query.order_by(InfinibandRow.port)):
            assert port.device_id is not None  # the query asked for these devices' ports
            found[port.device_id].append(port)
    return found


def new_port(
    hostname: str, device_id: str, entry: IbPort, tenant_id: str | None, project_id: str | None
) -> dict[str, Any]:
    """The columns of a port a machine's document lists, as both write paths create it
    (one machine at a time, and the bulk import): the machine's ownership; its source is
    the machine's document, not a source of its own, so it reads as manual."""
    return {
        "name": infiniband_name(hostname, entry.name),
        "device": hostname,
        "device_id": device_id,
        "port": entry.name,
        **entry.facts,
        "status": Status.AVAILABLE.value,
        "tags": {},
        "tenant_id": tenant_id,
        "project_id": project_id,
        "source_system": SourceSystem.MANUAL.value,
        "source_id": None,
        "source_url": None,
    }


def replace_device_ports(
    session: Session,
    who: Principal,
    device: Any,
    ports: Sequence[IbPort],
    tenant_id: str | None,
    project_id: str | None,
) -> bool:
    """Make a machine's ports exactly those its document lists. True when anything changed.

    The ports get the machine's ``tenant_id`` and ``project_id``. Raises
    InvalidField("infiniband", message) when a new port's name is held by some other port, so
    the caller reports it instead of failing on the unique name.
    """
    hostname = device.hostname
    existing = {
        p.port: p
        for p in session.scalars(select(InfinibandRow).where(InfinibandRow.device_id == device.id))
    }
    # A name held by a port of something else in the namespace (e.g. a same-name switch's):
    # checked for new ports, and for all of them when the machine moves to another tenant
    # or is renamed (its ports are named after it).
    moving = any(p.tenant_id != tenant_id or p.device != hostname for p in existing.values())
    names = [infiniband_name(hostname, p.name) for p in ports if moving or p.name not in existing]
    if names:
        taken = session.scalar(
            select(InfinibandRow.name).where(
                InfinibandRow.name.in_(names),
                in_namespace(InfinibandRow.tenant_id, tenant_id),
                InfinibandRow.device_id.is_distinct_from(device.id),
            )
        )
        if taken is not None:
            raise InvalidField("infiniband", f"port {taken!r} is taken")
    changed = False
    for entry in ports:
        row = existing.pop(entry.name, None)
        if row is None:
            row = InfinibandRow(**new_port(hostname, device.id, entry, tenant_id, project_id))
            session.add(row)
            changed = True
        changes = [
            assign(row, "name", infiniband_name(hostname, entry.name)),
            assign(row, "device", hostname),
            *(assign(row, column, value) for column, value in entry.facts.items()),
            assign(row, "tenant_id", tenant_id),
            assign(row, "project_id", project_id),
        ]
        changed = changed or any(changes)
    if existing:
        ids = [p.id for p in existing.values()]
        session.execute(delete(InfinibandRow).where(InfinibandRow.id.in_(ids)))
        for port in existing.values():
            session.expunge(port)
            audit.record(
                session,
                who,
                "delete",
                "infiniband",
                port.id,
                port.name,
                port.tenant_id,
                before={"name": port.name},
            )
        changed = True
    return changed


class HostNotFound(InvalidField):
    """A port names a machine or switch that is not in its namespace. The import reports
    it on the row (an InvalidField); a single create answers NOT_FOUND."""

    def __init__(self, name: str):
        super().__init__("device", f"device {name!r} not found")


def host_of(session: Session, tenant_id: str | None, name: str) -> DeviceRow | SwitchRow:
    """The machine (a device, else a VM) or switch a port sits on, in the port's own
    namespace: a port can only be put on what its writer owns."""
    query = select(DeviceRow).where(
        DeviceRow.hostname == name, in_namespace(DeviceRow.tenant_id, tenant_id)
    )
    machine = session.scalar(query.order_by(DeviceRow.kind))  # 'baremetal' before 'vm'
    if machine is not None:
        return machine
    on_switch = select(SwitchRow).where(
        SwitchRow.name == name, in_namespace(SwitchRow.tenant_id, tenant_id)
    )
    switch = session.scalar(on_switch)
    if switch is None:
        raise HostNotFound(name)
    return switch


def write_spec(
    session: Session,
    who: Principal,
    directory: Directory,
    spec: InfinibandSpec,
    existing: InfinibandRow | None,
) -> tuple[InfinibandRow, bool]:
    port = existing
    if port is None:  # a new port belongs to its host's tenant and project
        host = host_of(session, directory.namespace(who, spec.tenant), spec.device)
        port = InfinibandRow(
            name=spec.name,
            device=spec.device,
            port=spec.port,
            device_id=host.id if isinstance(host, DeviceRow) else None,
            tenant_id=host.tenant_id,
            project_id=host.project_id,
        )
    current = (port.tenant_id, port.project_id)
    tenant_id, project_id = directory.resolve(who, spec.tenant, spec.project, current)
    changes = [
        *(assign(port, column, value) for column, value in spec.facts.items()),
        assign_common(port, spec, tenant_id, project_id),
    ]
    if existing is None:
        session.add(port)
    if existing is None or any(changes):
        session.flush()
    return port, existing is None or any(changes)


ORDER_COLUMNS = {
    "name": InfinibandRow.name,
    "created_at": InfinibandRow.created_at,
    "updated_at": InfinibandRow.updated_at,
}


def list_infinibands(
    session: Session,
    who: Principal,
    *,
    statuses: list[str] | None,
    tenant_id: str | None,
    fabric: str | None,
    device: str | None,
    switch: str | None,
    order: str,
    descending: bool,
    first: int,
    after: str | None,
) -> Page:
    query = scoped(select(InfinibandRow), InfinibandRow.tenant_id, who)
    if statuses:
        query = query.where(InfinibandRow.status.in_(statuses))
    if tenant_id is not None:
        query = query.where(InfinibandRow.tenant_id == tenant_id)
    for column, value in (
        (InfinibandRow.fabric, fabric),
        (InfinibandRow.device, device),
        (InfinibandRow.switch, switch),
    ):
        if value is not None:
            query = query.where(column == value)
    return keyset_page(
        session, query, InfinibandRow.id, ORDER_COLUMNS[order], descending, first, after
    )
