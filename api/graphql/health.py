"""Health conditions in GraphQL: reportHealth / clearHealth, and Machine.health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.types import Info

from api.db import health as health_db
from api.domain import health
from api.graphql.common import AUTH
from api.graphql.context import Context
from api.metrics import HEALTH_ALERTS

# strawberry.enum makes the domain's enum a GraphQL enum in place (and returns it): named
# here as a plain alias, which annotations can use (a call's result is no type to mypy).
HealthCode = health.HealthCode
strawberry.enum(
    HealthCode,
    name="HealthCode",
    description="XID, ECC, THERMAL, GPU_LOST (a GPU's); LINK_DOWN, LINK_DEGRADED (an "
    "InfiniBand port's); OTHER.",
)


@strawberry.type(description="A condition a monitoring agent reported; cleared by clearHealth.")
class HealthCondition:
    code: HealthCode
    message: str | None
    gpu_index: int | None = strawberry.field(description="The GPU it concerns, if one.")
    port: str | None = strawberry.field(description="The InfiniBand port it concerns, if one.")
    since: datetime = strawberry.field(description="When it was first reported.")
    reported_by: str

    @classmethod
    def of(cls, entry: dict[str, Any]) -> HealthCondition:
        return cls(
            code=health.HealthCode(entry["code"]),
            message=entry.get("message"),
            gpu_index=entry.get("gpuIndex"),
            port=entry.get("port"),
            since=datetime.fromisoformat(entry["since"]),
            reported_by=entry.get("reportedBy", ""),
        )


@strawberry.type
class HealthReport:
    hostname: str = strawberry.field(description="The server the condition is on.")
    healthy: bool
    health: list[HealthCondition]
    alert: bool = strawberry.field(
        description="The server holds allocations: they are kept, and a health-alert event "
        "is in the audit log for an operator."
    )
    allocations: list[str] = strawberry.field(
        description="The environments of the allocations it holds."
    )

    @classmethod
    def of(cls, written: health_db.HealthWrite) -> HealthReport:
        conditions = written.device.health or []
        return cls(
            hostname=written.device.hostname,
            healthy=not conditions,
            health=[HealthCondition.of(c) for c in conditions],
            alert=written.alert,
            allocations=written.environments,
        )


@strawberry.type
class HealthMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description="Report a condition on a server (or VM), one of its GPUs (gpuIndex), or "
        "one of its InfiniBand ports (the port's id). The server stops being matched and "
        "allocatable until the condition is cleared. An allocated server keeps its "
        "allocations and raises an alert. A repeated report refreshes the condition.",
    )
    def report_health(
        self,
        info: Info[Context, None],
        id: strawberry.ID,
        code: HealthCode,
        message: str | None = None,
        gpu_index: int | None = None,
    ) -> HealthReport:
        with info.context.write() as session:
            written = health_db.report(
                session, info.context.who(), id, health.HealthCode(code), message, gpu_index
            )
        if written.alert:
            HEALTH_ALERTS.labels(health.HealthCode(code).value).inc()
        return HealthReport.of(written)

    @strawberry.mutation(
        permission_classes=AUTH,
        description="Clear a server's conditions (of one code, if given); a port's id clears "
        "that port's. The server is matched again once none are left.",
    )
    def clear_health(
        self, info: Info[Context, None], id: strawberry.ID, code: HealthCode | None = None
    ) -> HealthReport:
        with info.context.write() as session:
            written = health_db.clear(
                session,
                info.context.who(),
                id,
                health.HealthCode(code) if code is not None else None,
            )
        return HealthReport.of(written)
