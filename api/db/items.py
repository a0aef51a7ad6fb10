"""What every kind of inventory item shares: scoping, lookup, status, delete, write guards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from api.db.models import DeviceRow, InfinibandRow, SwitchRow
from api.domain.access import Principal
from api.domain.errors import (
    CONCURRENT_UPDATE,
    DEVICE_ALLOCATED,
    FORBIDDEN,
    DomainError,
    bad_input,
    not_found,
)
from api.domain.vocabulary import Status

ItemModel = type[DeviceRow] | type[SwitchRow] | type[InfinibandRow]
Item = DeviceRow | SwitchRow | InfinibandRow
ITEM_MODELS: tuple[ItemModel, ...] = (DeviceRow, SwitchRow, InfinibandRow)


def kind_of(item: Item) -> str:
    return item.kind if isinstance(item, DeviceRow) else type(item).__tablename__


def name_of(item: Item) -> str:
    return item.hostname if isinstance(item, DeviceRow) else item.name


def visible(item: Item | None, who: Principal) -> bool:
    """Whether the caller may read the item: a machine of the platform's shared pool is
    readable by every tenant (``Principal.may_see_shared``)."""
    if item is None:
        return False
    if isinstance(item, DeviceRow):
        return who.may_see_shared(item.tenant_id)
    return who.may_see(item.tenant_id)


def check_writable(item: Item, who: Principal) -> None:
    """A visible item the caller may not change: the platform's shared pool, to a tenant."""
    if not who.may_see(item.tenant_id):
        raise DomainError(
            FORBIDDEN,
            f"{kind_of(item)} {name_of(item)!r} is in the platform's shared pool: "
            "only platform staff may change it",
        )


def get_item[M: Item](
    session: Session,
    who: Principal,
    model: type[M],
    item_id: str,
    *,
    kind: str | None = None,
    for_update: bool = False,
    writing: bool = False,
) -> M:
    """The item by id, if the caller may read it (else NOT_FOUND); ``writing``: and change
    it (else FORBIDDEN: it is visible, so saying so tells nothing new)."""
    query = select(model).where(model.id == item_id)
    if for_update:
        query = query.with_for_update()
    item = session.scalar(query)
    label = kind or model.__tablename__
    if item is None or not visible(item, who) or (kind is not None and kind_of(item) != kind):
        raise not_found(label, item_id)
    if writing:
        check_writable(item, who)
    return item


def find_item(session: Session, who: Principal, item_id: str, *, writing: bool = False) -> Item:
    """Any kind by id (ids are UUIDs, unique across kinds): for ``node`` and ``setStatus``;
    ``writing`` as for ``get_item``."""
    for model in ITEM_MODELS:
        item = _get(session, model, item_id)
        if item is not None:
            if not visible(item, who):
                break
            if writing:
                check_writable(item, who)
            return item
    raise not_found("item", item_id)


def _get[M: Item](session: Session, model: type[M], item_id: str) -> M | None:
    return session.get(model, item_id)


def check_generation(item: Item, expected: int | None) -> None:
    if expected is not None and item.generation != expected:
        raise DomainError(
            CONCURRENT_UPDATE,
            f"{kind_of(item)} {name_of(item)!r} is at "
            f"generation {item.generation}, not {expected}: re-read and retry",
            {"generation": item.generation},
        )


def check_writable_status(item: Item, new_status: Status, force: bool, who: Principal) -> None:
    """Allocation state belongs to matchDevice/releaseAllocation, not to manual edits."""
    if new_status == Status.ALLOCATED:
        raise bad_input("status: 'allocated' is set by matchDevice, not by hand", field="status")
    if item.status == Status.ALLOCATED:  # and new_status is not: refused above
        if not force:
            raise DomainError(
                DEVICE_ALLOCATED,
                f"{kind_of(item)} {name_of(item)!r} is "
                "allocated; release its allocation first, or a platform-admin "
                "may pass force: true",
            )
        who.require_platform_admin("force a status change on an allocated item")


@contextmanager
def guarded_flush(session: Session, item: Item) -> Iterator[None]:
    """Flush now and turn a lost compare-and-swap race into CONCURRENT_UPDATE."""
    label = f"{kind_of(item)} {name_of(item)!r}"  # read now: after a failed flush it cannot be
    try:
        yield
        session.flush()
    except StaleDataError:
        raise DomainError(
            CONCURRENT_UPDATE,
            f"{label} was changed by someone else at the same time: re-read and retry",
        ) from None


def assign(row: Any, column: str, value: Any) -> bool:
    """Assign only real changes, so an unchanged upsert writes nothing at all."""
    if getattr(row, column, None) == value:
        return False
    setattr(row, column, value)
    return True


def assign_common(row: Any, spec: Any, tenant_id: str | None, project_id: str | None) -> bool:
    """The columns every kind shares: tags, ownership, source and (unless allocated) status."""
    changes = [
        assign(row, "tags", dict(spec.tags)),
        assign(row, "tenant_id", tenant_id),
        assign(row, "project_id", project_id),
        assign(row, "source_system", spec.source.system.value),
        assign(row, "source_id", spec.source.id),
        assign(row, "source_url", spec.source.url),
    ]
    return assign_status(row, spec) or any(changes)


def assign_status(row: Any, spec: Any) -> bool:
    """The status a document gives, unless the item is allocated (matchDevice's state)."""
    if spec.status is not None and row.status != Status.ALLOCATED:
        return assign(row, "status", spec.status.value)
    if row.status is None:
        return assign(row, "status", Status.AVAILABLE.value)
    return False


def source_document(item: Any) -> dict[str, Any]:
    if item.source_system == "manual":
        return {"system": "manual"}
    return {"system": item.source_system, "id": item.source_id, "url": item.source_url}
