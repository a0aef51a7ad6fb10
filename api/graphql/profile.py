"""Profiles in GraphQL: saveProfile and profiles."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.db import profile as profile_db
from api.db.models import ProfileRow
from api.domain.matching.profile import InventoryType as DomainInventoryType
from api.graphql.common import AUTH
from api.graphql.context import Context

# strawberry.enum makes the domain's enum a GraphQL enum in place (and returns it): named
# here as a plain alias, which annotations can use (a call's result is no type to mypy).
InventoryType = DomainInventoryType
strawberry.enum(
    InventoryType,
    name="InventoryType",
    description="Which scheduler a profile runs: the `paas.envmgmt.io/inventory` label.",
)


@strawberry.type(description="A compute profile: its labels select the scheduler and filters.")
class Profile:
    name: str
    labels: JSON
    inventory_type: InventoryType
    tenant: str | None

    @classmethod
    def from_row(cls, row: ProfileRow, info: Info[Context, None]) -> Profile:
        return cls(
            name=row.name,
            labels=JSON(row.labels),
            inventory_type=DomainInventoryType(row.inventory_type),
            tenant=info.context.directory.tenant(row.tenant_id),
        )


@strawberry.type
class ProfileQuery:
    @strawberry.field(permission_classes=AUTH)
    def profiles(self, info: Info[Context, None]) -> list[Profile]:
        rows = profile_db.list_profiles(info.context.session, info.context.who())
        return [Profile.from_row(r, info) for r in rows]


@strawberry.type
class ProfileMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description=(
            'Create or replace a profile. labels: {"paas.envmgmt.io/inventory": "baremetal", '
            '"paas.envmgmt.io/inventory.config": "[...filters...]"}; validated now '
            "(BAD_PROFILE names the filter index and field)."
        ),
    )
    def save_profile(self, info: Info[Context, None], name: str, labels: JSON) -> Profile:
        labels_value: Any = labels
        with info.context.write() as session:
            row = profile_db.save_profile(session, info.context.who(), name, labels_value)
        return Profile.from_row(row, info)
