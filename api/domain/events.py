"""Events out (DESIGN.md "Events"): their types, the CloudEvents 1.0 envelope a webhook
receives, and the signature that proves it came from us. Pure: the outbox, the webhooks
and the dispatcher that sends them are the service's (api/db/events.py)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from api.domain.preemption import allocation_state

PREFIX = "io.gpuinv."
ALLOCATION_CREATED = PREFIX + "allocation.created"
ALLOCATION_RELEASED = PREFIX + "allocation.released"
ALLOCATION_EXPIRED = PREFIX + "allocation.expired"
ALLOCATION_PREEMPTING = PREFIX + "allocation.preempting"
ALLOCATION_PREEMPTED = PREFIX + "allocation.preempted"
DEVICE_HEALTH_ALERT = PREFIX + "device.health_alert"
QUOTA_EXCEEDED = PREFIX + "quota.exceeded"
REQUEST_TYPES = tuple(
    PREFIX + "request." + state
    for state in (
        "submitted",
        "approved",
        "rejected",
        "queued",
        "fulfilled",
        "cancelled",
        "expired",
    )
)
# Every type a webhook may subscribe to (DESIGN.md's list).
TYPES = (
    ALLOCATION_CREATED,
    ALLOCATION_RELEASED,
    ALLOCATION_EXPIRED,
    ALLOCATION_PREEMPTING,
    ALLOCATION_PREEMPTED,
    *REQUEST_TYPES,
    DEVICE_HEALTH_ALERT,
    QUOTA_EXCEEDED,
)
SIGNATURE_HEADER = "X-Gpuinv-Signature"
SOURCE = "/gpuinv"  # CloudEvents ``source``: this service


def cloud_event(
    event_id: str, type_: str, subject: str, time: datetime, data: Any, source: str = SOURCE
) -> dict[str, Any]:
    """The CloudEvents 1.0 structured-mode JSON of one event."""
    return {
        "specversion": "1.0",
        "id": event_id,
        "type": type_,
        "source": source,
        "time": time.isoformat().replace("+00:00", "Z"),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the body with the webhook's secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def wants(subscribed: list[str], type_: str) -> bool:
    """Whether a webhook subscribed to ``subscribed`` (empty: every type) wants ``type_``."""
    return not subscribed or type_ in subscribed


def allocation_data(
    allocation: Mapping[str, Any],
    devices: Sequence[Mapping[str, Any]],
    tenant: str | None,
    project: str | None,
) -> dict[str, Any]:
    """An allocation as the GraphQL API renders it (its fields by their GraphQL names),
    from its row's columns and its devices' rows."""

    def at(name: str) -> str | None:
        value = allocation.get(name)
        return value.isoformat().replace("+00:00", "Z") if value is not None else None

    return {
        "id": allocation["id"],
        "environment": allocation["environment"],
        "tenant": tenant,
        "project": project,
        "inventoryType": str(allocation["inventory_type"]).upper(),
        "profile": allocation.get("profile"),
        "variables": allocation.get("variables"),
        "deviceDetails": allocation.get("device_details"),
        "createdAt": at("created_at"),
        "expiresAt": at("expires_at"),
        "releasedAt": at("released_at"),
        "releasedBy": allocation.get("released_by"),
        "preemptible": bool(allocation.get("preemptible")),
        "borrowed": bool(allocation.get("borrowed")),
        "priority": allocation.get("priority") or 0,
        "state": allocation_state(
            allocation.get("released_at"),
            allocation.get("released_by"),
            allocation.get("preempt_at"),
        ).value,
        "preemptAt": at("preempt_at"),
        "devices": [
            {
                "deviceId": d["device_id"],
                "hostname": d["hostname"],
                "exclusive": d["exclusive"],
                "cpu": d["cpu"],
                "memoryMB": d["memory_mb"],
                "storageGB": d["storage_gb"],
                "gpus": d["gpus"],
            }
            for d in devices
        ],
    }
