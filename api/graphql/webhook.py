"""Webhooks in GraphQL (DESIGN.md "Events": createWebhook, webhooks, deleteWebhook,
webhookDeliveries). A webhook's secret goes in and never comes out."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

import strawberry
from strawberry.types import Info

from api.db import webhook as webhook_db
from api.db.models import WebhookRow
from api.domain.events import TYPES
from api.graphql.common import AUTH, page_size
from api.graphql.context import Context


@strawberry.input(description="Where to POST events, and which.")
class CreateWebhookInput:
    url: str = strawberry.field(
        description="An http(s) URL; loopback and private addresses are refused unless the "
        "service allows them (GPUINV_WEBHOOK_ALLOW_PRIVATE=1)."
    )
    secret: str = strawberry.field(
        description="16 to 1024 characters: each delivery carries X-Gpuinv-Signature: "
        "sha256=<hex HMAC-SHA256 of the body with it>. Stored encrypted, never shown again."
    )
    events: list[str] | None = strawberry.field(
        default=None,
        description="Event types, e.g. io.gpuinv.allocation.created; null or empty: all of "
        f"them ({', '.join(TYPES)}).",
    )
    tenant: str | None = strawberry.field(
        default=None,
        description="A tenant slug: that tenant's events only. null: the caller's tenant; "
        "for a platform-admin, a platform webhook, which hears every tenant's events.",
    )


@strawberry.type(description="A webhook: where a tenant's (or the platform's) events go.")
class Webhook:
    id: strawberry.ID
    url: str
    events: list[str] = strawberry.field(description="The types it takes; empty: every type.")
    tenant: str | None = strawberry.field(description="null: a platform webhook.")
    created_at: datetime


@strawberry.enum
class DeliveryStatus(Enum):
    PENDING = "pending"  # not delivered yet: retried until it is, or until given up
    DELIVERED = "delivered"
    FAILED = "failed"  # given up


@strawberry.type(description="One attempt at a delivery.")
class WebhookAttempt:
    at: datetime
    response_code: int | None
    error: str | None
    ms: int = strawberry.field(description="How long the attempt took, in milliseconds.")


@strawberry.type(description="One event to one webhook, and how sending it went.")
class WebhookDelivery:
    id: strawberry.ID
    event_id: str = strawberry.field(description="The CloudEvents id (receivers dedupe on it).")
    type: str
    subject: str = strawberry.field(description="The allocation's, request's or device's id.")
    status: DeliveryStatus
    attempts: int
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None = strawberry.field(description="null unless pending.")
    delivered_at: datetime | None
    response_code: int | None = strawberry.field(description="The last attempt's HTTP status.")
    error: str | None = strawberry.field(description="Why the last attempt failed.")
    attempt_log: list[WebhookAttempt] = strawberry.field(description="The latest attempts.")


def webhook_type(row: WebhookRow, info: Info[Context, None]) -> Webhook:
    return Webhook(
        id=strawberry.ID(row.id),
        url=row.url,
        events=list(row.events or []),
        tenant=info.context.directory.tenant(row.tenant_id),
        created_at=row.created_at,
    )


def _delivery(found: Any) -> WebhookDelivery:
    row = found.WebhookDeliveryRow
    return WebhookDelivery(
        id=strawberry.ID(str(row.id)),
        event_id=found.event_id,
        type=found.type,
        subject=row.subject,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at if row.status == webhook_db.PENDING else None,
        delivered_at=row.delivered_at,
        response_code=row.response_code,
        error=row.error,
        attempt_log=[
            WebhookAttempt(
                at=datetime.fromisoformat(entry["at"].replace("Z", "+00:00")),
                response_code=entry.get("responseCode"),
                error=entry.get("error"),
                ms=entry.get("ms") or 0,
            )
            for entry in row.attempts_log or []
        ],
    )


@strawberry.type
class WebhookQuery:
    @strawberry.field(
        permission_classes=AUTH,
        description="The webhooks the caller manages: a partner-admin its tenant's, a "
        "platform-admin every one.",
    )
    def webhooks(self, info: Info[Context, None]) -> list[Webhook]:
        rows = webhook_db.list_webhooks(info.context.session, info.context.who())
        return [webhook_type(row, info) for row in rows]

    @strawberry.field(
        permission_classes=AUTH, description="A webhook's latest deliveries, newest event first."
    )
    def webhook_deliveries(
        self, info: Info[Context, None], webhook_id: strawberry.ID, first: int = 100
    ) -> list[WebhookDelivery]:
        limit = page_size(info, first)
        found = webhook_db.deliveries(info.context.session, info.context.who(), webhook_id, limit)
        return [_delivery(f) for f in found]


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        permission_classes=AUTH,
        description="Send events to a URL: a partner-admin for its tenant, a platform-admin "
        "for any tenant or the platform.",
    )
    def create_webhook(self, info: Info[Context, None], input: CreateWebhookInput) -> Webhook:
        given = webhook_db.WebhookInput(input.url, input.secret, input.events, input.tenant)
        settings = info.context.settings
        with info.context.write() as session:
            row = webhook_db.create_webhook(
                session,
                info.context.who(),
                given,
                settings.secret_key,
                settings.webhook_allow_private,
            )
        return webhook_type(row, info)

    @strawberry.mutation(
        permission_classes=AUTH, description="Delete a webhook; its pending deliveries go too."
    )
    def delete_webhook(self, info: Info[Context, None], id: strawberry.ID) -> Webhook:
        with info.context.write() as session:
            row = webhook_db.delete_webhook(session, info.context.who(), id)
        return webhook_type(row, info)
