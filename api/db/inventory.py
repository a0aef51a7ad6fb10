"""Single-item writes for every kind: create, update, delete, set status.

Each function is one step of a unit of work: validate (domain) → check state → write →
audit. The caller commits. Documents in and out use the public document shape.
"""

from __future__ import annotations

from typing import Any, Literal, overload

from sqlalchemy import ColumnElement, select
from sqlalchemy import delete as sql_delete
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from api.db import audit, device, infiniband, switch
from api.db.items import (
    Item,
    ItemModel,
    check_generation,
    check_writable_status,
    find_item,
    get_item,
    guarded_flush,
    kind_of,
    name_of,
)
from api.db.models import AllocationDeviceRow, DeviceRow, InfinibandRow, SwitchRow
from api.db.scope import in_namespace
from api.db.tenant import Directory
from api.domain.access import Principal
from api.domain.document import (
    DocumentError,
    parse_device,
    parse_infiniband,
    parse_switch,
)
from api.domain.errors import DEVICE_ALLOCATED, DomainError, InvalidField, bad_input, not_found
from api.domain.vocabulary import Kind, Status

MODELS: dict[Kind, ItemModel] = {
    Kind.BAREMETAL: DeviceRow,
    Kind.VM: DeviceRow,
    Kind.SWITCH: SwitchRow,
    Kind.INFINIBAND: InfinibandRow,
}
# Output-only keys of a rendered document, dropped before a merged document is re-parsed.
_OUTPUT_ONLY = ("id", "kind", "status")


def _audit(
    session: Session,
    who: Principal,
    action: str,
    item: Item,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    audit.record(
        session, who, action, kind_of(item), item.id, name_of(item), item.tenant_id, before, after
    )


def render_item(session: Session, item: Item, directory: Directory | None = None) -> dict[str, Any]:
    directory = directory or Directory.load(session)
    if isinstance(item, DeviceRow):
        return device.documents(session, [item], directory)[0]
    if isinstance(item, SwitchRow):
        return switch.render(item, directory)
    return infiniband.render(item, directory)


def _parse(kind: Kind, raw: dict[str, Any]) -> Any:
    try:
        if kind in (Kind.BAREMETAL, Kind.VM):
            return parse_device(raw, kind)
        if kind == Kind.SWITCH:
            return parse_switch(raw)
        return parse_infiniband(raw)
    except DocumentError as exc:
        first = exc.errors[0]
        raise bad_input(
            f"{first.field}: {first.message}"
            + (f" (and {len(exc.errors) - 1} more)" if len(exc.errors) > 1 else ""),
            errors=[e.as_dict() for e in exc.errors],
        ) from None


def _named(kind: Kind, name: str, tenant_id: str | None) -> ColumnElement[bool]:
    """The condition for the item of this kind and name in one namespace."""
    model = MODELS[kind]
    condition: ColumnElement[bool]
    if issubclass(model, DeviceRow):  # kind is baremetal or vm
        condition = (model.hostname == name) & (model.kind == kind.value)
    else:
        condition = model.name == name
    return condition & in_namespace(model.tenant_id, tenant_id)


def _name_field(kind: Kind) -> str:
    return "hostname" if kind in (Kind.BAREMETAL, Kind.VM) else "name"


def _refuse_taken(session: Session, kind: Kind, name: str, tenant_id: str | None) -> None:
    """A name is unique in its namespace only; the caller may see that whole namespace
    (its own tenant, or, for a platform admin, any), so saying it is taken reveals
    nothing of another tenant."""
    if session.scalar(select(MODELS[kind].id).where(_named(kind, name, tenant_id))) is not None:
        field = _name_field(kind)
        raise bad_input(f"{field}: {kind.value} {name!r} already exists", field=field)


def _namespace(directory: Directory, who: Principal, tenant: str | None) -> str | None:
    try:
        return directory.namespace(who, tenant)
    except InvalidField as exc:
        raise exc.as_bad_input() from None


def _write(
    session: Session,
    who: Principal,
    kind: Kind,
    spec: Any,
    existing: Item | None,
    before: dict[str, Any] | None,
    directory: Directory,
) -> Item:
    item: Item
    try:
        if kind in (Kind.BAREMETAL, Kind.VM):
            assert existing is None or isinstance(existing, DeviceRow)  # MODELS[kind] is Device
            written = device.write_spec(session, who, directory, spec, existing, before)
            item, changed, after = written.item, written.action != "unchanged", written.after
        else:
            module = switch if kind == Kind.SWITCH else infiniband
            item, changed = module.write_spec(session, who, directory, spec, existing)
            after = module.render(item, directory) if changed else before
    except infiniband.HostNotFound:
        raise not_found("device", spec.device) from None
    except InvalidField as exc:
        raise exc.as_bad_input() from None
    if changed:
        _audit(session, who, "update" if existing else "create", item, before, after)
    return item


# The kind says which model create, update and delete return (MODELS): told to mypy below.
type _DeviceKind = Literal[Kind.BAREMETAL, Kind.VM]
type _Raw = dict[str, Any]


@overload
def create(session: Session, who: Principal, kind: _DeviceKind, raw: _Raw) -> DeviceRow: ...
@overload
def create(
    session: Session, who: Principal, kind: Literal[Kind.SWITCH], raw: _Raw
) -> SwitchRow: ...
@overload
def create(
    session: Session, who: Principal, kind: Literal[Kind.INFINIBAND], raw: _Raw
) -> InfinibandRow: ...
@overload
def create(session: Session, who: Principal, kind: Kind, raw: _Raw) -> Item: ...
def create(session: Session, who: Principal, kind: Kind, raw: dict[str, Any]) -> Item:
    who.require_inventory_write()
    spec = _parse(kind, raw)
    directory = Directory.load(session)
    tenant_id = _namespace(directory, who, spec.tenant)
    _refuse_taken(session, kind, _name_of_spec(spec), tenant_id)
    return _write(session, who, kind, spec, None, None, directory)


@overload
def update(
    session: Session,
    who: Principal,
    kind: _DeviceKind,
    item_id: str,
    patch: _Raw,
    expected_generation: int | None,
) -> DeviceRow: ...
@overload
def update(
    session: Session,
    who: Principal,
    kind: Literal[Kind.SWITCH],
    item_id: str,
    patch: _Raw,
    expected_generation: int | None,
) -> SwitchRow: ...
@overload
def update(
    session: Session,
    who: Principal,
    kind: Literal[Kind.INFINIBAND],
    item_id: str,
    patch: _Raw,
    expected_generation: int | None,
) -> InfinibandRow: ...
@overload
def update(
    session: Session,
    who: Principal,
    kind: Kind,
    item_id: str,
    patch: _Raw,
    expected_generation: int | None,
) -> Item: ...
def update(
    session: Session,
    who: Principal,
    kind: Kind,
    item_id: str,
    patch: dict[str, Any],
    expected_generation: int | None,
) -> Item:
    """Merge ``patch`` over the stored document and write it back, validated as a whole."""
    who.require_inventory_write()
    item = get_item(session, who, MODELS[kind], item_id, kind=kind.value, writing=True)
    return update_item(session, who, kind, item, patch, expected_generation)


def update_item(
    session: Session,
    who: Principal,
    kind: Kind,
    item: Item,
    patch: dict[str, Any],
    expected_generation: int | None,
    directory: Directory | None = None,
) -> Item:
    """``update`` of an item the caller has read (one it may see), with the tenant
    directory if it has one: the sync applies many changes, each without reading its
    item or the directory again."""
    who.require_inventory_write()
    check_generation(item, expected_generation)
    directory = directory or Directory.load(session)
    before = render_item(session, item, directory)
    merged = {k: v for k, v in before.items() if k not in _OUTPUT_ONLY} | patch
    spec = _parse(kind, merged)
    name = _name_of_spec(spec)
    tenant_id = _namespace_after(session, directory, who, item, spec)
    renamed = name != name_of(item)
    if renamed and isinstance(item, InfinibandRow):
        raise bad_input(
            f"name: a port is named after its machine ({name_of(item)!r} → {name!r}); "
            "rename the machine, or delete the port and create it anew"
        )
    if renamed or tenant_id != item.tenant_id:
        _refuse_taken(session, kind, name, tenant_id)
    if renamed:
        # The same item under a new name: its id, its ports (renamed with it, by the write
        # below) and its allocations stay. A machine renamed in NetBox arrives this way.
        _rename(session, item, name)
    with guarded_flush(session, item):
        return _write(session, who, kind, spec, item, before, directory)


def _rename(session: Session, item: Item, name: str) -> None:
    if isinstance(item, DeviceRow):
        item.hostname = name
        # What active allocations hold is named as the device is now; their
        # device_details stay the documents they were given.
        session.execute(
            sql_update(AllocationDeviceRow)
            .where(AllocationDeviceRow.device_id == item.id, AllocationDeviceRow.active.is_(True))
            .values(hostname=name)
            .execution_options(synchronize_session=False)
        )
    else:
        item.name = name


def _name_of_spec(spec: Any) -> str:
    name: str = spec.hostname if hasattr(spec, "hostname") else spec.name
    return name


def _namespace_after(
    session: Session, directory: Directory, who: Principal, item: Item, spec: Any
) -> str | None:
    """The namespace the item is in after the update. An item an allocation holds keeps
    its namespace until it is released (its holder named it in that namespace)."""
    if spec.tenant is None:
        return item.tenant_id
    tenant_id = _namespace(directory, who, spec.tenant)
    if tenant_id != item.tenant_id and (item.status == Status.ALLOCATED or _held(session, item)):
        raise DomainError(
            DEVICE_ALLOCATED,
            f"{kind_of(item)} {name_of(item)!r} is allocated; release its allocation "
            "before moving it to another tenant",
        )
    return tenant_id


@overload
def delete(session: Session, who: Principal, kind: _DeviceKind, item_id: str) -> DeviceRow: ...
@overload
def delete(
    session: Session, who: Principal, kind: Literal[Kind.SWITCH], item_id: str
) -> SwitchRow: ...
@overload
def delete(
    session: Session, who: Principal, kind: Literal[Kind.INFINIBAND], item_id: str
) -> InfinibandRow: ...
@overload
def delete(session: Session, who: Principal, kind: Kind, item_id: str) -> Item: ...
def delete(session: Session, who: Principal, kind: Kind, item_id: str) -> Item:
    who.require_inventory_write()
    item = get_item(session, who, MODELS[kind], item_id, kind=kind.value, writing=True)
    if item.status == Status.ALLOCATED or _held(session, item):
        raise DomainError(
            DEVICE_ALLOCATED,
            f"{kind.value} {name_of(item)!r} is allocated; "
            "release its allocation before deleting it",
        )
    before = render_item(session, item)
    if isinstance(item, DeviceRow):
        # Its ports go with it (the foreign key cascades too; this keeps the ORM honest).
        session.execute(sql_delete(InfinibandRow).where(InfinibandRow.device_id == item.id))
    with guarded_flush(session, item):
        session.delete(item)
    _audit(session, who, "delete", item, before, None)
    return item


def _held(session: Session, item: Item) -> bool:
    """Whether an active allocation holds the item (whole or as a slice)."""
    if not isinstance(item, DeviceRow):
        return False
    query = select(AllocationDeviceRow.id).where(
        AllocationDeviceRow.device_id == item.id, AllocationDeviceRow.active.is_(True)
    )
    return session.scalar(query.limit(1)) is not None


def set_status(
    session: Session, who: Principal, item_id: str, status: Status, force: bool, reason: str | None
) -> Item:
    who.require_inventory_write()
    item = find_item(session, who, item_id, writing=True)
    check_writable_status(item, status, force, who)
    if item.status == status.value:
        return item
    before = {"status": item.status}
    with guarded_flush(session, item):
        item.status = status.value
    after: dict[str, Any] = {"status": status.value}
    if reason:
        after["reason"] = reason
    if force:
        after["forced"] = True
    _audit(session, who, "set-status", item, before, after)
    return item
