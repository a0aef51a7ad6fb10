"""Webhooks (DESIGN.md "Events"): who may create, list and delete them, the checks on their
targets, their secrets encrypted at rest; and the dispatcher's side of the outbox: fanning
events out to deliveries, claiming the deliveries due, recording attempts and pruning. Each
dispatcher function owns its (short) transaction, so it takes the sessionmaker; the policy
(when to retry, when to give up) and the leader lease are api/dispatcher.py's.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import bindparam, delete, exists, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased, sessionmaker

from api.db import audit
from api.db.models import EventRow, WebhookDeliveryRow, WebhookRow
from api.db.scope import scoped
from api.db.session import rowcount, unit_of_work
from api.db.tenant import tenant_by_slug
from api.domain.access import Principal, Role
from api.domain.errors import FORBIDDEN, NOT_CONFIGURED, DomainError, bad_input, not_found
from api.domain.events import TYPES, wants

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
MIN_SECRET, MAX_SECRET, MAX_URL = 16, 1024, 2048
ALLOW_PRIVATE_HINT = "unless the service runs with GPUINV_WEBHOOK_ALLOW_PRIVATE=1"

type Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class WebhookInput:
    url: str
    secret: str
    events: list[str] | None = None  # None or empty: every type
    tenant: str | None = None  # a slug; None: the caller's tenant, or the platform's


# -- secrets -------------------------------------------------------------------------------


def _keys(secret_key: str) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in secret_key.split(",") if k])


def decrypt(secret_key: str, token: str) -> str:
    """A webhook's secret in the clear (cryptography.fernet.InvalidToken if no key fits)."""
    return _keys(secret_key).decrypt(token.encode()).decode()


# -- targets -------------------------------------------------------------------------------


def address_problem(address: Address, allow_private: bool) -> str | None:
    """Why a webhook may not be sent to ``address`` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    for kind in ("loopback", "unspecified", "link_local", "private", "reserved"):
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    return None if address.is_global else "an address that is not globally routable"


def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` stands for (itself, if it is one); [] if it does not resolve."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):
        return []
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in found))


def target_problem(host: str, addresses: list[Address], allow_private: bool) -> str | None:
    """Why a host that resolved to ``addresses`` may not be a target: any one of them
    refused refuses the host (a name may not mix public and private addresses)."""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        addresses = addresses or [ipaddress.ip_address("127.0.0.1")]  # RFC 6761
    for address in addresses:
        problem = address_problem(address, allow_private)
        if problem is not None:
            shown = host if host == str(address) else f"{host} resolves to {address},"
            return f"{shown} {'is' if host == str(address) else 'which is'} {problem}"
    return None


def check_url(given: str, allow_private: bool) -> str:
    """The URL as stored, or BAD_INPUT naming ``url``: http(s), a host, no credentials,
    and not loopback, private, link-local or unspecified (nor a name resolving to one)
    unless allowed. A name that does not resolve yet is taken: each delivery checks the
    address it connects to again."""
    url = given.strip()

    def refuse(why: str) -> DomainError:
        return bad_input(f"url: {why}; got {given[:200]!r}", field="url")

    if not url or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise refuse(f"must be an http(s) URL of at most {MAX_URL} characters, without spaces")
    try:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise refuse(f"not a URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise refuse("only http and https URLs can receive webhooks")
    if not parsed.host:
        raise refuse("names no host")
    if parsed.userinfo:
        raise refuse("must not carry credentials (user:password@): deliveries are signed")
    problem = target_problem(parsed.host, resolve(parsed.host, port), allow_private)
    if problem is not None:
        raise refuse(f"{problem}, refused as a webhook target {ALLOW_PRIVATE_HINT}")
    return url


def _events(given: list[str] | None) -> list[str]:
    for value in given or []:
        if value not in TYPES:
            raise bad_input(
                f"events: unknown event type {value[:100]!r} (one of: {', '.join(TYPES)})",
                field="events",
            )
    return list(dict.fromkeys(given or []))


# -- webhooks ------------------------------------------------------------------------------


def _require_admin(who: Principal) -> None:
    if who.role not in (Role.PLATFORM_ADMIN, Role.PARTNER_ADMIN):
        raise DomainError(
            FORBIDDEN,
            f"role {who.role.value!r} may not manage webhooks (needs platform-admin or "
            "partner-admin)",
        )


def _owner(session: Session, who: Principal, tenant: str | None) -> str | None:
    """The tenant id a new webhook belongs to (None: the platform's, for every tenant)."""
    _require_admin(who)
    if who.role == Role.PARTNER_ADMIN:
        if tenant is not None and tenant != who.tenant_slug:
            raise DomainError(FORBIDDEN, "a partner-admin manages only its own tenant's webhooks")
        return who.tenant_id
    return None if tenant is None else tenant_by_slug(session, who, tenant).id


def create_webhook(
    session: Session, who: Principal, given: WebhookInput, secret_key: str, allow_private: bool
) -> WebhookRow:
    tenant_id = _owner(session, who, given.tenant)
    if not secret_key:
        raise DomainError(
            NOT_CONFIGURED,
            "webhooks are off: the service has no GPUINV_SECRET_KEY to encrypt their secrets "
            "with (an operator sets it to a Fernet key and restarts the service)",
        )
    url = check_url(given.url, allow_private)
    if not MIN_SECRET <= len(given.secret) <= MAX_SECRET:
        raise bad_input(
            f"secret: must be {MIN_SECRET} to {MAX_SECRET} characters (a random string, "
            f"e.g. `openssl rand -hex 32`), got {len(given.secret)}",
            field="secret",
        )
    events = _events(given.events)
    secret = _keys(secret_key).encrypt(given.secret.encode()).decode()
    row = WebhookRow(
        url=url, secret=secret, events=events, tenant_id=tenant_id, created_by=who.actor
    )
    session.add(row)
    session.flush()
    audit.record(session, who, "create", "webhook", row.id, url, tenant_id, after=_audited(row))
    return row


def list_webhooks(session: Session, who: Principal) -> list[WebhookRow]:
    _require_admin(who)
    query = select(WebhookRow).order_by(WebhookRow.created_at, WebhookRow.id)
    return list(session.scalars(scoped(query, WebhookRow.tenant_id, who)))


def webhook(session: Session, who: Principal, webhook_id: str) -> WebhookRow:
    """One webhook the caller manages; another tenant's (or the platform's, to a tenant)
    reads as unknown."""
    _require_admin(who)
    query = scoped(select(WebhookRow).where(WebhookRow.id == webhook_id), WebhookRow.tenant_id, who)
    found = session.scalar(query)
    if found is None:
        raise not_found("webhook", webhook_id)
    return found


def delete_webhook(session: Session, who: Principal, webhook_id: str) -> WebhookRow:
    """Delete a webhook and its deliveries (pending ones are not sent)."""
    row = webhook(session, who, webhook_id)
    session.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == row.id))
    session.delete(row)
    session.flush()
    audit.record(
        session, who, "delete", "webhook", row.id, row.url, row.tenant_id, _audited(row), None
    )
    return row


def deliveries(session: Session, who: Principal, webhook_id: str, limit: int) -> list[Any]:
    """A webhook's latest deliveries, newest event first: each delivery row with its
    event's ``event_id`` and ``type``."""
    found = webhook(session, who, webhook_id)
    query = (
        select(WebhookDeliveryRow, EventRow.id.label("event_id"), EventRow.type)
        .join(EventRow, EventRow.seq == WebhookDeliveryRow.event_seq)
        .where(WebhookDeliveryRow.webhook_id == found.id)
        .order_by(WebhookDeliveryRow.event_seq.desc())
        .limit(limit)
    )
    return list(session.execute(query))


def _audited(row: WebhookRow) -> dict[str, Any]:
    return {"url": row.url, "events": list(row.events)}  # never the secret


# -- the dispatcher's side: fan-out, claims, attempts, pruning --------------------------------

_D = WebhookDeliveryRow
_NOT_FANNED_OUT = text("NOT event.fanned_out")  # the partial index's own predicate


@dataclass(frozen=True)
class Due:
    """A claimed delivery, with what sending it takes."""

    id: int
    url: str
    secret: str  # the Fernet token
    attempts: int
    log: list[Any]
    event_id: str
    type: str
    subject: str
    time: datetime
    data: Any


# Due's fields, in order.
_DUE = (_D.id, WebhookRow.url, WebhookRow.secret, _D.attempts, _D.attempts_log, EventRow.id,
        EventRow.type, EventRow.subject, EventRow.time, EventRow.data)  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    """An attempt's outcome, as the dispatcher decided to record it."""

    delivery_id: int
    status: str
    attempts: int
    at: datetime
    next_attempt_at: datetime
    response_code: int | None
    error: str | None
    log: list[Any]


def has_work(sessions: sessionmaker[Session], now: datetime) -> bool:
    """Events to fan out, or deliveries due: two index look-ups, and no write."""
    to_fan_out = exists().where(_NOT_FANNED_OUT).select_from(EventRow)
    due = exists().where(_D.status == PENDING, _D.next_attempt_at <= now)
    with sessions() as session:
        return bool(session.scalar(select(or_(to_fan_out, due))))


def fan_out(sessions: sessionmaker[Session], now: datetime, limit: int = 500) -> int:
    """Make the deliveries of up to ``limit`` new events: one per webhook that wants the
    event (its tenant's, or a platform webhook; of a type it subscribed to)."""
    with unit_of_work(sessions) as session:
        events = session.execute(
            select(EventRow.seq, EventRow.type, EventRow.subject, EventRow.tenant_id)
            .where(_NOT_FANNED_OUT)
            .order_by(EventRow.seq)
            .limit(limit)
        ).all()
        if not events:
            return 0
        hooks = session.execute(
            select(WebhookRow.id, WebhookRow.tenant_id, WebhookRow.events)
        ).all()
        rows = [
            {"webhook_id": h.id, "event_seq": e.seq, "subject": e.subject, "status": PENDING,
             "attempts": 0, "next_attempt_at": now, "attempts_log": []}
            for e in events
            for h in hooks
            if h.tenant_id in (None, e.tenant_id) and wants(list(h.events or []), e.type)
        ]  # fmt: skip
        if rows:
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            statement = dialect.insert(_D).on_conflict_do_nothing(
                index_elements=["webhook_id", "event_seq"]
            )
            session.execute(statement, rows)
        session.execute(
            update(EventRow)
            .where(EventRow.seq.in_([e.seq for e in events]))
            .values(fanned_out=True)
            .execution_options(synchronize_session=False)
        )
        return len(events)


def claim_due(
    sessions: sessionmaker[Session], now: datetime, until: datetime, limit: int
) -> list[Due]:
    """Claim up to ``limit`` deliveries due now, each the earliest pending one of its
    subject to its webhook, by moving their next attempt to ``until``: a conditional
    UPDATE, so two dispatchers never claim one delivery (the loser's re-check finds it
    no longer due). A claimant that dies leaves it due again at ``until``."""
    earlier = aliased(_D)
    held_back = exists().where(
        earlier.webhook_id == _D.webhook_id,
        earlier.subject == _D.subject,
        earlier.status == PENDING,
        earlier.event_seq < _D.event_seq,
    )
    with unit_of_work(sessions) as session:
        ids = session.scalars(
            select(_D.id)
            .where(_D.status == PENDING, _D.next_attempt_at <= now, ~held_back)
            .order_by(_D.next_attempt_at, _D.event_seq)
            .limit(limit)
        ).all()
        if not ids:
            return []
        claimed = session.scalars(
            update(_D)
            .where(_D.id.in_(ids), _D.status == PENDING, _D.next_attempt_at <= now)
            .values(next_attempt_at=until)
            .returning(_D.id)
            .execution_options(synchronize_session=False)
        ).all()
        if not claimed:
            return []
        found = session.execute(
            select(*_DUE)
            .join(WebhookRow, WebhookRow.id == _D.webhook_id)
            .join(EventRow, EventRow.seq == _D.event_seq)
            .where(_D.id.in_(claimed))
            .order_by(_D.event_seq)
        )
        return [Due(*row) for row in found]


_RECORD = (
    update(_D.__table__)
    .where(_D.__table__.c.id == bindparam("b_id"), _D.__table__.c.status == PENDING)
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        last_attempt_at=bindparam("b_at"),
        next_attempt_at=bindparam("b_next"),
        delivered_at=bindparam("b_delivered"),
        response_code=bindparam("b_code"),
        error=bindparam("b_error"),
        attempts_log=bindparam("b_log"),
    )
)


def record_attempts(sessions: sessionmaker[Session], attempts: list[Attempt]) -> None:
    """Write the outcomes of claimed deliveries, in one transaction."""
    if not attempts:
        return
    rows = [
        {"b_id": a.delivery_id, "b_status": a.status, "b_attempts": a.attempts, "b_at": a.at,
         "b_next": a.next_attempt_at, "b_delivered": a.at if a.status == DELIVERED else None,
         "b_code": a.response_code, "b_error": a.error, "b_log": a.log}
        for a in attempts
    ]  # fmt: skip
    with unit_of_work(sessions) as session:
        session.execute(_RECORD, rows)


def prune(sessions: sessionmaker[Session], before: datetime) -> int:
    """Forget events older than ``before`` whose deliveries are all done, with those
    deliveries (the foreign key cascades)."""
    pending = exists().where(_D.event_seq == EventRow.seq, _D.status == PENDING)
    with unit_of_work(sessions) as session:
        done = delete(EventRow).where(EventRow.fanned_out, EventRow.time < before, ~pending)
        return rowcount(session.execute(done))
