"""Bearer tokens: created once (the secret is shown once), stored as SHA-256, revocable.

SHA-256 rather than a slow password hash: the secrets are 256 random bits, so there is
nothing to brute-force, and every request verifies one.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import audit
from api.db.base import utcnow
from api.db.models import ApiTokenRow, TenantRow
from api.db.tenant import tenant_by_slug
from api.domain.access import Principal, Role, validate_token_grant
from api.domain.errors import bad_input, not_found

PREFIX = "gpuinv_"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    session: Session,
    who: Principal,
    role_text: str,
    tenant_slug: str | None,
    name: str | None,
    ttl: timedelta | None,
) -> tuple[ApiTokenRow, str]:
    who.require_platform_admin("create tokens")
    role = validate_token_grant(role_text, tenant_slug)
    tenant = tenant_by_slug(session, who, tenant_slug) if tenant_slug else None
    if ttl is not None and ttl.total_seconds() <= 0:
        raise bad_input("ttl: must be positive", field="ttl")
    secret = PREFIX + secrets.token_urlsafe(32)
    token = ApiTokenRow(
        name=name or f"{role.value}{'@' + tenant.slug if tenant else ''}",
        role=role.value,
        tenant_id=tenant.id if tenant else None,
        secret_hash=hash_secret(secret),
        hint=secret[-4:],
        expires_at=(utcnow() + ttl) if ttl else None,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        who,
        "create",
        "token",
        token.id,
        token.name,
        token.tenant_id,
        after={"role": role.value, "tenant": tenant_slug, "expiresAt": _iso(token.expires_at)},
    )
    return token, secret


def list_tokens(session: Session) -> list[tuple[ApiTokenRow, str | None]]:
    query = select(ApiTokenRow, TenantRow.slug).outerjoin(
        TenantRow, TenantRow.id == ApiTokenRow.tenant_id
    )
    return [(t, slug) for t, slug in session.execute(query.order_by(ApiTokenRow.created_at))]


def revoke_token(session: Session, who: Principal, token_id: str) -> ApiTokenRow:
    who.require_platform_admin("revoke tokens")
    token = session.get(ApiTokenRow, token_id)
    if token is None:
        matches = list(
            session.scalars(select(ApiTokenRow).where(ApiTokenRow.id.startswith(token_id)))
        )
        if len(matches) != 1 or len(token_id) < 6:
            raise not_found("token", token_id)
        token = matches[0]
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(session, who, "revoke", "token", token.id, token.name, token.tenant_id)
    return token


def look_up(session: Session, secret: str) -> tuple[Principal | None, str | None, datetime | None]:
    """The principal for a presented secret, or None and the reason it was refused; and
    when the token expires (None: never), for a cache to honour."""
    row = session.execute(
        select(ApiTokenRow, TenantRow.slug)
        .outerjoin(TenantRow, TenantRow.id == ApiTokenRow.tenant_id)
        .where(ApiTokenRow.secret_hash == hash_secret(secret))
    ).first()
    if row is None:
        return None, "unknown bearer token", None
    token, tenant_slug = row
    # A category only: the token's name, id and dates are for its owner (`gpuinv token
    # list`), not for whoever presents the secret.
    if token.revoked_at is not None:
        return None, "bearer token revoked", None
    if token.expires_at is not None and token.expires_at <= utcnow():
        return None, "bearer token expired", None
    principal = Principal(
        name=f"token:{token.name}",
        role=Role(token.role),
        tenant_id=token.tenant_id,
        tenant_slug=tenant_slug,
        token_id=token.id,
    )
    return principal, None, token.expires_at


class TokenCache:
    """Principals of valid tokens, kept for ``seconds`` per process.

    Every request presents a token; reading it from the database each time cost a
    transaction and ~0.8 ms of a claim's 5.8. The price is a bound on revocation: a token
    revoked elsewhere (the CLI, another replica) still works here for at most ``seconds``
    (GPUINV_TOKEN_CACHE_SECONDS, default 5; 0 turns the cache off). An expiry is honoured
    to the second. Refusals are not cached, so a token created a moment ago works at once.
    Keyed by the secret's hash; bounded in size (cleared when full: the next requests
    simply read the database).
    """

    def __init__(self, seconds: float, max_entries: int = 10_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float, datetime | None]] = {}
        self._lock = threading.Lock()

    def get(self, secret: str) -> Principal | None:
        if self.seconds <= 0:
            return None
        key = hash_secret(secret)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        principal, cached_until, expires_at = entry
        if time.monotonic() >= cached_until or (expires_at and expires_at <= utcnow()):
            with self._lock:
                self._entries.pop(key, None)
            return None
        return principal

    def put(self, secret: str, principal: Principal, expires_at: datetime | None) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[hash_secret(secret)] = (
                principal,
                time.monotonic() + self.seconds,
                expires_at,
            )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
