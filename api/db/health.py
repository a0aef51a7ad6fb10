"""Reporting and clearing health conditions (api/domain/health.py) on servers and their
InfiniBand ports. Each write is audited; a condition on a server that holds an allocation
also writes a ``health-alert`` event naming the allocations, and frees nothing."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import audit, events
from api.db.base import utcnow
from api.db.items import find_item, guarded_flush, kind_of, name_of
from api.db.models import AllocationDeviceRow, AllocationRow, DeviceRow, InfinibandRow
from api.domain.access import Principal
from api.domain.errors import bad_input
from api.domain.events import DEVICE_HEALTH_ALERT
from api.domain.health import HealthCode, cleared, condition, reported


@dataclass
class HealthWrite:
    device: DeviceRow
    item_kind: str  # what was named: the server's kind, or "infiniband"
    # the allocations held on the server: (environment, its tenant's id)
    holders: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def environments(self) -> list[str]:
        return [environment for environment, _ in self.holders]

    @property
    def tenants(self) -> list[str | None]:
        """The holders' tenants (None: a platform-wide allocation), each once."""
        return list(dict.fromkeys(tenant for _, tenant in self.holders))

    def environments_of(self, tenant_id: str | None) -> list[str]:
        return [environment for environment, tenant in self.holders if tenant == tenant_id]

    @property
    def alert(self) -> bool:
        return bool(self.holders)


def _server_and_port(
    session: Session, who: Principal, item_id: str
) -> tuple[DeviceRow, str | None]:
    item = find_item(session, who, item_id, writing=True)
    if isinstance(item, DeviceRow):
        return item, None
    if isinstance(item, InfinibandRow) and item.device_id is not None:
        device = session.get(DeviceRow, item.device_id)
        assert device is not None  # the foreign key holds
        return device, item.port
    raise bad_input(
        f"id: {kind_of(item)} {name_of(item)!r} cannot carry health conditions (a server, a "
        "VM or a server's InfiniBand port can)",
        field="id",
    )


def _held_by(session: Session, device: DeviceRow) -> list[tuple[str, str | None]]:
    held = (
        select(AllocationRow.environment, AllocationRow.tenant_id)
        .join(AllocationDeviceRow, AllocationDeviceRow.allocation_id == AllocationRow.id)
        .where(AllocationDeviceRow.device_id == device.id, AllocationDeviceRow.active)
        .order_by(AllocationRow.environment)
    )
    return [(environment, tenant) for environment, tenant in session.execute(held)]


def report(
    session: Session,
    who: Principal,
    item_id: str,
    code: HealthCode,
    message: str | None,
    gpu_index: int | None,
) -> HealthWrite:
    who.require_inventory_write()
    device, port = _server_and_port(session, who, item_id)
    if port is not None and gpu_index is not None:
        raise bad_input("gpuIndex: a port's condition concerns no GPU; omit it", field="gpuIndex")
    new = condition(code, message, gpu_index, port, device.total_gpus, utcnow(), who.actor)
    before = list(device.health or [])
    with guarded_flush(session, device):
        device.health = reported(before, new)
        device.healthy = False
    written = HealthWrite(device, "infiniband" if port else device.kind, _held_by(session, device))
    audit.record(
        session,
        who,
        "report-health",
        device.kind,
        device.id,
        device.hostname,
        device.tenant_id,
        {"health": before or None},
        {"health": device.health},
    )
    if written.alert:
        audit.record(
            session,
            who,
            "health-alert",
            device.kind,
            device.id,
            device.hostname,
            device.tenant_id,
            None,
            {"condition": new.stored(), "allocations": written.environments},
        )
        # Each holder's tenant hears of it; the device's document is what GraphQL shows.
        for tenant_id in written.tenants:
            events.record(
                session,
                DEVICE_HEALTH_ALERT,
                device.id,
                tenant_id,
                {
                    "id": device.id,
                    "hostname": device.hostname,
                    "condition": new.stored(),
                    "allocations": written.environments_of(tenant_id),
                },
            )
    return written


def clear(session: Session, who: Principal, item_id: str, code: HealthCode | None) -> HealthWrite:
    """Clear the server's conditions (of ``code`` only, if given); naming a port clears
    that port's only. Clearing what is not there changes nothing."""
    who.require_inventory_write()
    device, port = _server_and_port(session, who, item_id)
    before = device.health
    after = cleared(before, code, port)
    if after != before:
        with guarded_flush(session, device):
            device.health = after
            device.healthy = after is None
        audit.record(
            session,
            who,
            "clear-health",
            device.kind,
            device.id,
            device.hostname,
            device.tenant_id,
            {"health": before},
            {"health": after},
        )
    return HealthWrite(device, "infiniband" if port else device.kind)
