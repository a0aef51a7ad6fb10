"""Shared GraphQL vocabulary: enums, the Node interface, connections, permissions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.permission import BasePermission
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db.paging import Page
from api.domain import vocabulary
from api.domain.errors import UNAUTHENTICATED, bad_input
from api.domain.fields import MACHINE_FACTS, PORT_FACTS, SWITCH_FACTS
from api.domain.limits import MAX_FILTER_TEXT, MAX_FILTER_VALUES, MAX_TAG_FILTERS
from api.graphql.context import Context

# strawberry.enum makes the domain's enum a GraphQL enum in place (and returns it): named
# here as a plain alias, which annotations can use (a call's result is no type to mypy).
Status = vocabulary.Status
strawberry.enum(
    Status, name="Status", description="Lifecycle of an item; only AVAILABLE items are matched."
)
Kind = vocabulary.Kind
strawberry.enum(Kind, name="Kind")


@strawberry.enum(description="Device kinds held in the device table.")
class DeviceKind(Enum):
    BAREMETAL = "baremetal"
    VM = "vm"


@strawberry.enum
class OrderDirection(Enum):
    ASC = "asc"
    DESC = "desc"


@strawberry.interface(description="Anything with a global id (a UUID, the same everywhere).")
class Node:
    id: strawberry.ID


@strawberry.type
class Source:
    system: str
    id: int | None
    url: str | None


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


T = TypeVar("T")


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A Relay connection; pages are keyset-based (cost is flat).")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    _page: strawberry.Private[Page]

    @strawberry.field(
        description="Items matching the filter (one COUNT query; ask only when you need it)."
    )
    def total_count(self, info: Info[Context, None]) -> int:
        return self._page.total(info.context.session)


def connection[N](page: Page, wrap: Callable[[Any], N]) -> Connection[N]:
    edges = [Edge(cursor=c, node=wrap(r)) for r, c in zip(page.rows, page.cursors, strict=True)]
    return Connection(
        edges=edges,
        _page=page,
        page_info=PageInfo(
            has_next_page=page.has_next, end_cursor=page.cursors[-1] if page.cursors else None
        ),
    )


def page_size(info: Info[Context, None], first: int) -> int:
    limit = info.context.settings.max_page_size
    if first < 1 or first > limit:
        raise bad_input(f"first: must be between 1 and {limit}, got {first}", field="first")
    return first


class IsAuthenticated(BasePermission):
    """Every field but introspection needs a valid bearer token."""

    error_extensions = {"code": UNAUTHENTICATED}

    def has_permission(self, source: Any, info: Info[Context, None], **kwargs: Any) -> bool:
        if info.context.principal is not None:
            return True
        self.message = info.context.auth_problem or (
            "missing bearer token: send 'Authorization: Bearer <token>' "
            "(create one with `gpuinv token create`)"
        )
        return False


AUTH: list[type[BasePermission]] = [IsAuthenticated]


def item_fields(row: Any) -> dict[str, Any]:
    """The columns every item type exposes, read off an ORM row."""
    return {
        "id": strawberry.ID(row.id),
        "status": vocabulary.Status(row.status),
        "tags": dict(row.tags or {}),
        "generation": row.generation,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "source": Source(system=row.source_system, id=row.source_id, url=row.source_url),
        "_tenant_id": row.tenant_id,
        "_project_id": row.project_id,
        "_row": row,
    }


@strawberry.type
class Tenant(Node):
    slug: str
    name: str
    created_at: datetime


@strawberry.type
class Project(Node):
    slug: str
    name: str
    tenant: str


@strawberry.interface(description="What every inventory item has.")
class Item(Node):
    status: Status
    tags: JSON
    generation: int = strawberry.field(
        description="Bumped by every change; pass it back as expectedGeneration to update safely."
    )
    created_at: datetime
    updated_at: datetime
    source: Source
    _tenant_id: strawberry.Private[str | None]
    _project_id: strawberry.Private[str | None]
    _row: strawberry.Private[Any]

    @strawberry.field(
        description="Conditions for an operator, e.g. [{code: NETBOX_DELETED, since}]: set by "
        "the NetBox sync on an allocated item instead of retiring it; the sync applies the "
        "change once the item is released. Empty when all is well."
    )
    def attention(self) -> JSON:
        return JSON(list(self._row.attention or []))

    @strawberry.field
    def tenant(self, info: Info[Context, None]) -> str | None:
        return info.context.directory.tenant(self._tenant_id)

    @strawberry.field
    def project(self, info: Info[Context, None]) -> str | None:
        return info.context.directory.project_slug(self._project_id)


@strawberry.input(description="Tag equality: every key must carry exactly this value.")
class TagInput:
    key: str
    value: str


def tags_filter(tags: list[TagInput] | None, field: str = "filter.tags") -> dict[str, str] | None:
    """Tag conditions, at most MAX_TAG_FILTERS of them: each is one more AND term of the
    query (SQLite refuses an expression tree more than 1,000 deep)."""
    if not tags:
        return None
    if len(tags) > MAX_TAG_FILTERS:
        raise bad_input(
            f"{field}: at most {MAX_TAG_FILTERS} tag conditions, got {len(tags)}", field=field
        )
    for tag in tags:
        text_filter(f"{field}.key", tag.key)
        text_filter(f"{field}.value", tag.value)
    return {t.key: t.value for t in tags}


def statuses(values: list[Any] | None, field: str = "filter.status") -> list[str] | None:
    values_filter(field, values)
    return [v.value for v in values] if values else None


def values_filter(field: str, values: list[Any] | None) -> list[Any] | None:
    """A list a filter matches any of: at most MAX_FILTER_VALUES values, texts no longer
    than a name."""
    if values is None:
        return None
    if len(values) > MAX_FILTER_VALUES:
        raise bad_input(
            f"{field}: at most {MAX_FILTER_VALUES} values, got {len(values)}", field=field
        )
    for value in values:
        if isinstance(value, str):
            text_filter(field, value)
    return values


def text_filter(field: str, value: str | None) -> str | None:
    """Text a filter compares with names: at most MAX_FILTER_TEXT characters (a LIKE
    pattern of megabytes is refused by SQLite as too complex)."""
    if value is not None and len(value) > MAX_FILTER_TEXT:
        raise bad_input(
            f"{field}: at most {MAX_FILTER_TEXT} characters, got {len(value)}", field=field
        )
    return value


def input_document(value: Any, names: dict[str, str]) -> dict[str, Any]:
    """A typed GraphQL input as a document dict (UNSET fields left out), so mutations and
    imports share one validator. ``names`` maps Python attribute names to document keys."""
    out: dict[str, Any] = {}
    for attr, field_value in vars(value).items():
        if field_value is strawberry.UNSET:
            continue
        key = names.get(attr, attr)
        if isinstance(field_value, list):
            field_value = [
                input_document(v, names) if hasattr(v, "__dict__") else v for v in field_value
            ]
        elif isinstance(field_value, Enum):
            field_value = field_value.value
        out[key] = field_value
    return out


FACTS = MACHINE_FACTS + SWITCH_FACTS + PORT_FACTS
DOCUMENT_NAMES = {f.attribute: f.key for f in FACTS if f.attribute != f.key} | {
    "vendor_code": "vendorCode",
    "model_no": "modelNo",
    "memory_mb": "memoryMB",
}


def check_time(field: str, value: datetime) -> None:
    """A time the log can be searched by: with a UTC offset, and still a date once moved
    to UTC (0001-01-01T00:00:00+14:00 would fall before year 1, 9999-12-31T23:00:00-14:00
    after 9999: Python cannot hold either)."""
    if value.tzinfo is None:
        raise bad_input(
            f"{field}: {value.isoformat()!r} has no UTC offset (write e.g. 2026-11-23T10:00:00Z)",
            field=field,
        )
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise bad_input(
            f"{field}: {value.isoformat()!r} is out of range in UTC (years 1 to 9999)",
            field=field,
        ) from None
