"""What a matchDevice asks for, resolved once per request: the input checked in DESIGN.md's
order (shape, profile, variables), whose inventory it matches, and the fingerprint that
tells a repeated request from a different one on the same environment."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from api.db.profile import saved_profile
from api.db.session import session_on
from api.db.tenant import project_id as tenant_project_id
from api.db.tenant import tenant_by_slug
from api.domain.access import Principal
from api.domain.errors import bad_input, not_found
from api.domain.matching.profile import parse_labels
from api.domain.matching.request import Request, resolve

MAX_TTL_SECONDS = 10 * 365 * 24 * 3600
MAX_PRIORITY = 1_000_000
PLATFORM_SCOPE = "*"  # environments of platform-wide callers live in this scope


@dataclass
class MatchInput:
    environment: str
    variables: Any
    profile: str | None = None
    labels: Any = None
    dry_run: bool = False
    tenant: str | None = None
    project: str | None = None
    ttl_seconds: int | None = None
    preemptible: bool = False  # may borrow beyond its GPU quota; willing to be preempted
    priority: int = 0  # stored now; the queue of provision requests orders by it


@dataclass
class Resolved:
    request: Request
    profile_name: str | None
    tenant_id: str | None
    tenant_slug: str | None
    project_id: str | None
    scope: str
    fingerprint: dict[str, Any] = field(default_factory=dict)

    @property
    def request_hash(self) -> str:
        raw = json.dumps(self.fingerprint, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(raw.encode()).hexdigest()


def resolve_request(connection: Connection, who: Principal, given: MatchInput) -> Resolved:
    """Validate the input in DESIGN.md's order: input shape, profile, variables."""
    environment = (given.environment or "").strip()
    if not environment or len(environment) > 255:
        raise bad_input(
            "environment: is required (1 to 255 characters), e.g. a Terraform resource id",
            field="environment",
        )
    given.environment = environment
    if (given.profile is None) == (given.labels is None):
        raise bad_input(
            "profile, labels: give exactly one: the name of a saved profile, or inline labels",
            field="profile",
        )
    if not isinstance(given.variables, dict):
        raise bad_input("variables: must be a JSON object of name: value", field="variables")
    if not -MAX_PRIORITY <= given.priority <= MAX_PRIORITY:
        raise bad_input(
            f"priority: must be between {-MAX_PRIORITY} and {MAX_PRIORITY}, got {given.priority}",
            field="priority",
        )
    if given.ttl_seconds is not None and not 1 <= given.ttl_seconds <= MAX_TTL_SECONDS:
        raise bad_input(
            f"ttlSeconds: must be between 1 and {MAX_TTL_SECONDS}, got {given.ttl_seconds}",
            field="ttlSeconds",
        )
    tenant_id, tenant_slug = whose_inventory(connection, who, given.tenant)
    project_id = None
    if given.project is not None:
        if tenant_id is None:
            raise bad_input("project: needs a tenant (pass tenant)", field="project")
        project_id = tenant_project_id(connection, tenant_id, given.project)
        if project_id is None:
            raise not_found("project", given.project)
    if given.profile is not None:
        profile = saved_profile(connection, tenant_id, given.profile)
    else:
        profile = parse_labels(given.labels)
    request = resolve(profile, given.variables)
    resolved = Resolved(
        request, given.profile, tenant_id, tenant_slug, project_id, tenant_id or PLATFORM_SCOPE
    )
    resolved.fingerprint = {
        "profile": profile.canonical(),
        "variables": request.fingerprint_variables(given.variables),
        "tenant": tenant_slug,
        "project": given.project,
    }
    # Only when asked for, so that the requests made before these existed keep their hash.
    if given.preemptible:
        resolved.fingerprint["preemptible"] = True
    if given.priority:
        resolved.fingerprint["priority"] = given.priority
    return resolved


def whose_inventory(
    connection: Connection | Session, who: Principal, slug: str | None
) -> tuple[str | None, str | None]:
    """Whose inventory is matched: the named tenant, else the caller's, else all."""
    if slug is None or slug == who.tenant_slug:
        return who.tenant_id, who.tenant_slug
    if isinstance(connection, Session):
        tenant = tenant_by_slug(connection, who, slug)
    else:
        with session_on(connection) as session:
            tenant = tenant_by_slug(session, who, slug)
    return tenant.id, tenant.slug
