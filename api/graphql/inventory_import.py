"""``importInventory``: bulk upload of device documents as JSON or CSV, all or nothing."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from api.db.inventory_import import import_batch, refresh_statistics
from api.domain.inventory_import import parse_import
from api.graphql.common import AUTH
from api.graphql.context import Context


@strawberry.enum
class ImportFormat(Enum):
    JSON = "json"
    CSV = "csv"


@strawberry.type(description="How many items the import created, changed or left as they were.")
class ImportResult:
    created: int
    updated: int
    unchanged: int


@strawberry.type
class ImportMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description=(
            "Upsert items by hostname (devices, VMs) or name (switches, InfiniBand). JSON is "
            '{"devices": [device documents], "vms": [...], "switches": [...], "infinibands": '
            "[...]}; CSV has one row per item. Validated as a whole: any bad row fails the "
            "import with BAD_INPUT and extensions.errors = [{row, field, message}]."
        ),
    )
    def import_inventory(
        self, info: Info[Context, None], *, format: ImportFormat = ImportFormat.JSON, data: str
    ) -> ImportResult:
        who = info.context.who()
        who.require_inventory_write()
        batch = parse_import(format.value, data)
        with info.context.write() as session:
            counts = import_batch(session, who, batch)
        refresh_statistics(info.context.engine, counts)
        return ImportResult(
            created=counts.created, updated=counts.updated, unchanged=counts.unchanged
        )
