"""Quotas in GraphQL (DESIGN.md "Sharing the fleet": QuotaInput, Quota, setQuota,
deleteQuota, quotas)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.db import quota as quota_db
from api.domain.quota import Limit
from api.graphql.common import AUTH
from api.graphql.context import Context


@strawberry.input(
    description="A quota: a tenant's, or a project's inside it; on every GPU model or one."
)
class QuotaInput:
    tenant: str = strawberry.field(description="A tenant slug.")
    project: str | None = strawberry.field(
        default=None, description="null: the tenant's own limit; else a project's inside it."
    )
    gpu_model: str | None = strawberry.field(
        default=None, description='null: every model; else a GPU modelNo, e.g. "H100-SXM5-80GB".'
    )
    gpus: int | None = strawberry.field(
        default=None, description="Most GPUs held at once; null: no GPU limit."
    )
    nodes: int | None = strawberry.field(
        default=None, description="Most devices held whole at once; null: no node limit."
    )


@strawberry.type(description="A quota's limits and what is held against them now.")
class Quota:
    tenant: str
    project: str | None
    gpu_model: str | None
    gpus: int | None
    nodes: int | None
    used_gpus: int
    used_nodes: int
    borrowed_gpus: int = strawberry.field(
        description="GPUs held by preemptible allocations admitted beyond the GPU limit."
    )

    @classmethod
    def of(cls, limit: Limit) -> Quota:
        return cls(
            tenant=limit.tenant,
            project=limit.project,
            gpu_model=limit.gpu_model,
            gpus=limit.gpus,
            nodes=limit.nodes,
            used_gpus=limit.used_gpus,
            used_nodes=limit.used_nodes,
            borrowed_gpus=limit.borrowed_gpus,
        )


@strawberry.type
class QuotaQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="The quotas set: every tenant's for platform staff, a tenant's own for it.",
    )
    def quotas(
        self, info: Info[Context, None], tenant: str | None = None, project: str | None = None
    ) -> list[Quota]:
        ctx = info.context
        return [Quota.of(q) for q in quota_db.list_quotas(ctx.session, ctx.who(), tenant, project)]


@strawberry.type
class QuotaMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description="Set a quota. platform-admin: any; partner-admin: its own projects', "
        "never above its tenant's limit.",
    )
    def set_quota(self, info: Info[Context, None], input: QuotaInput) -> Quota:
        given = quota_db.QuotaInput(
            tenant=input.tenant,
            project=input.project,
            gpu_model=input.gpu_model,
            gpus=input.gpus,
            nodes=input.nodes,
        )
        with info.context.write() as session:
            return Quota.of(quota_db.set_quota(session, info.context.who(), given))

    @strawberry.mutation(permission_classes=AUTH, description="Lift a quota; null if none was set.")
    def delete_quota(
        self,
        info: Info[Context, None],
        tenant: str,
        project: str | None = None,
        gpu_model: str | None = None,
    ) -> Quota | None:
        with info.context.write() as session:
            lifted = quota_db.delete_quota(session, info.context.who(), tenant, project, gpu_model)
        return Quota.of(lifted) if lifted is not None else None
