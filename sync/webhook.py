"""NetBox webhooks: apply one change as it happens, instead of waiting for the next sync.

NetBox's event rule posts the changed object; a change to a part (a GPU module, an
InfiniBand interface, a cable) re-syncs the device it belongs to. The request is trusted
only if ``X-Hook-Signature`` is the HMAC-SHA512 of the body with the shared secret. The
device is then read back from NetBox (the payload is a notification, not the truth: the
object may have changed again since) by the sync's loader limited to it, with its
retries, and translated, diffed and applied like a full sync.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pynetbox
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.db.session import unit_of_work
from api.domain.errors import CONCURRENT_UPDATE, DomainError
from api.settings import Settings
from sync import reconcile
from sync.diff import Change, diff
from sync.mapping import Mapping, MappingError, load_mapping
from sync.netbox import DEVICE, VM, NetBoxUnavailable, Target, connect, load
from sync.translate import Note, translate

log = logging.getLogger("gpuinv.sync")
EVENT_OBJECT_TYPES = (
    "dcim.device",
    "dcim.module",
    "dcim.interface",
    "dcim.cable",
    "virtualization.virtualmachine",
)


class BadEvent(ValueError):
    """A payload that is not a NetBox event we understand; the message says what is wrong."""


def signature_ok(secret: str, body: bytes, signature: str | None) -> bool:
    expected = hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()
    return signature is not None and hmac.compare_digest(expected, signature.strip().lower())


def targets(payload: Any) -> list[Target]:
    """Which devices or VMs an event concerns (pure)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        raise BadEvent("not a NetBox event: expected an object with 'object_type' and 'data'")
    kind, data = payload.get("object_type"), payload["data"]
    if kind == "dcim.device":
        return [Target(DEVICE, _id(data))]
    if kind == "virtualization.virtualmachine":
        return [Target(VM, _id(data))]
    if kind in ("dcim.module", "dcim.interface"):
        return [Target(DEVICE, _id(data.get("device")))]
    if kind == "dcim.cable":
        ends = [*data.get("a_terminations", []), *data.get("b_terminations", [])]
        found = {
            _id((end.get("object") or {}).get("device"))
            for end in ends
            if isinstance(end, dict) and (end.get("object") or {}).get("device")
        }
        return [Target(DEVICE, i) for i in sorted(found)]
    raise BadEvent(f"object_type {kind!r} is not one the sync follows")


def _id(nested: Any) -> int:
    if not isinstance(nested, dict) or not isinstance(nested.get("id"), int):
        raise BadEvent("the event's data has no object id")
    netbox_id: int = nested["id"]
    return netbox_id


def sync_targets(
    sessions: sessionmaker[Session], api: pynetbox.api, mapping: Mapping, found: list[Target]
) -> list[Change]:
    """Re-read each target from NetBox and apply what changed, in one transaction."""
    changes: list[Change] = []
    for target in found:
        snapshot = load(api, mapping, only=target)
        desired = translate(snapshot, mapping)
        # The items these NetBox objects are (by NetBox id), and those that hold their
        # names where NetBox puts them (by kind, tenant and name).
        slots = {(kind, tenant, name) for kind, tenant, name, _ in desired.items()}
        netbox_ids = {target.netbox_id, *(d["source"]["id"] for *_, d in desired.items())}
        families = ("vm",) if target.family == VM else ("baremetal", "switch")
        with sessions() as session:
            current = [
                item
                for item in reconcile.holdings(session, slots, netbox_ids)
                if item.kind in families
            ]
        notes: list[Note] = [*desired.notes]
        changes.extend(diff(desired, current, notes))
        for note in notes:
            log.info("netbox webhook: note: %s %s: %s", note.kind, note.key, note.message)
    # One cable event names both its ends, and a device's snapshot brings its cabled
    # switches: the same change may come twice.
    changes = list({(c.action, c.kind, c.key, c.netbox_id, c.item_id): c for c in changes}.values())
    with unit_of_work(sessions) as session:
        reconcile.apply(session, changes)
    return changes


def sync_targets_once_more_if_raced(
    sessions: sessionmaker[Session], api: pynetbox.api, mapping: Mapping, found: list[Target]
) -> list[Change]:
    """``sync_targets``; read and diff again, once, when the inventory changed between its
    diff and its apply (CONCURRENT_UPDATE). NetBox posts an event once: a race lost here
    would leave the change to the next full sync."""
    try:
        return sync_targets(sessions, api, mapping, found)
    except (reconcile.SyncError, DomainError) as exc:
        if exc.code != CONCURRENT_UPDATE:
            raise
        log.info("netbox webhook: %s; reading NetBox and the inventory again", exc)
    return sync_targets(sessions, api, mapping, found)


def endpoint(
    sessions: sessionmaker[Session], settings: Settings
) -> Callable[[Request], Awaitable[JSONResponse]]:
    """The ``/hooks/netbox`` route handler for the service (api/app.py mounts it)."""
    try:
        mapping = load_mapping(settings.sync_mapping_file, "GPUINV_SYNC_MAPPING")
    except MappingError as exc:
        raise SystemExit(str(exc)) from None

    async def netbox_hook(request: Request) -> JSONResponse:
        secret = settings.netbox_webhook_secret
        if not secret:
            return _error(503, "NetBox webhooks are off: set GPUINV_NETBOX_WEBHOOK_SECRET")
        body = await request.body()
        if not signature_ok(secret, body, request.headers.get("X-Hook-Signature")):
            return _error(401, "X-Hook-Signature is missing or does not match the body")
        try:
            found = targets(parse(body))
        except BadEvent as exc:
            return _error(400, str(exc))
        if not (settings.netbox_url and settings.netbox_token):
            return _error(503, "set NETBOX_URL and NETBOX_TOKEN so the service can read NetBox")
        api = connect(settings.netbox_url, settings.netbox_token)
        try:
            changes = await asyncio.to_thread(
                sync_targets_once_more_if_raced, sessions, api, mapping, found
            )
        except NetBoxUnavailable as exc:
            return _error(502, str(exc))
        except (reconcile.SyncError, DomainError) as exc:  # e.g. a race lost at commit
            return _error(409, str(exc))
        log.info("netbox webhook: %d change(s) for %s", len(changes), found)
        return JSONResponse({"changes": [c.as_json() for c in changes]})

    return netbox_hook


HOOK_NAME = "gpu-inventory"


def setup_webhook(api: pynetbox.api, service_url: str, secret: str) -> tuple[int, int]:
    """Create (or bring up to date) NetBox's webhook to ``<service_url>/hooks/netbox`` and
    the event rule that fires it for devices, modules, interfaces, cables and VMs.
    Idempotent: both are found by name. Returns their ids."""
    payload_url = service_url.rstrip("/") + "/hooks/netbox"
    hook_fields = {
        "name": HOOK_NAME,
        "payload_url": payload_url,
        "http_method": "POST",
        "http_content_type": "application/json",
        "secret": secret,
        "ssl_verification": payload_url.startswith("https"),
    }
    hook = api.extras.webhooks.get(name=HOOK_NAME)
    if hook is None:
        hook = api.extras.webhooks.create(**hook_fields)
    else:
        hook.update(hook_fields)
    rule_fields = {
        "name": HOOK_NAME,
        "object_types": list(EVENT_OBJECT_TYPES),
        "event_types": ["object_created", "object_updated", "object_deleted"],
        "enabled": True,
        "action_type": "webhook",
        "action_object_type": "extras.webhook",
        "action_object_id": hook.id,
    }
    rule = api.extras.event_rules.get(name=HOOK_NAME)
    if rule is None:
        rule = api.extras.event_rules.create(**rule_fields)
    else:
        rule.update(rule_fields)
    return hook.id, rule.id


def _error(status: int, message: str) -> JSONResponse:
    """A refused event, answered to NetBox and logged here: NetBox shows the answer only in
    its rqworker's log, which the service's operator may never read.

    Logged at every refusal, not once per reason: each one is a NetBox change that did not
    land (NetBox does not retry), the log then counts them and says when they stopped, and
    the access log already writes a line per request, so this adds no flood of its own.
    """
    log.warning("netbox webhook refused (%d): %s", status, message)
    return JSONResponse({"error": message}, status_code=status)


def parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BadEvent(f"the body is not JSON: {exc}") from exc
