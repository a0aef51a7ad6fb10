"""Saved profiles: labels by name, validated when saved (and again when used)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Text, bindparam, cast, or_, select
from sqlalchemy.orm import Session

from api.db import audit
from api.db.models import ProfileRow
from api.db.scope import in_namespace, usable
from api.domain.access import Principal
from api.domain.errors import bad_input, not_found
from api.domain.matching import profile as matching
from api.domain.matching.profile import parse_labels


def save_profile(session: Session, who: Principal, name: str, labels: Any) -> ProfileRow:
    """Create or replace a profile in the caller's namespace: a platform admin's are the
    platform's (every tenant reads them), a partner admin's its tenant's own. A tenant's
    profile may take a platform profile's name: it then shadows that profile for this
    tenant only (see ``saved_profile``), and the platform's is never written by a tenant."""
    who.require_inventory_write()
    name = name.strip()
    if not name or len(name) > 255:
        raise bad_input("name: must be 1 to 255 characters", field="name")
    parsed = parse_labels(labels)
    tenant_id = who.namespace
    profile = session.scalar(
        select(ProfileRow).where(
            ProfileRow.name == name, in_namespace(ProfileRow.tenant_id, tenant_id)
        )
    )
    before = None if profile is None else {"labels": profile.labels}
    if profile is None:
        profile = ProfileRow(name=name, tenant_id=tenant_id)
        session.add(profile)
    profile.labels = dict(labels)
    profile.inventory_type = parsed.inventory_type.value
    session.flush()
    audit.record(
        session,
        who,
        "save",
        "profile",
        profile.id,
        name,
        profile.tenant_id,
        before,
        {"labels": profile.labels},
    )
    return profile


# The tenant's own first: NULLs sort last in ascending order on SQLite and PostgreSQL alike
# only with an explicit "nulls last". With no tenant, "tenant_id = NULL" matches nothing,
# so one statement (built once: every matchDevice runs it) serves both. The labels come
# as their JSON text, which keys the cache of parsed profiles below.
_LABELS = (
    select(cast(ProfileRow.__table__.c.labels, Text).label("labels"))
    .where(
        ProfileRow.__table__.c.name == bindparam("name"),
        or_(
            ProfileRow.__table__.c.tenant_id.is_(None),
            ProfileRow.__table__.c.tenant_id == bindparam("tenant_id"),
        ),
    )
    .order_by(ProfileRow.__table__.c.tenant_id.asc().nulls_last())
    .limit(1)
)


def saved_profile(
    connection: Connection | Session, tenant_id: str | None, name: str
) -> matching.Profile:
    """The profile a name means for a tenant's match: the tenant's own first, then the
    platform's. ``tenant_id`` is the tenant whose inventory is matched (None: a
    platform-wide match, which sees platform profiles only). Read on every match (a save
    on another replica is seen at once); parsed once per distinct text."""
    found = connection.execute(_LABELS, {"name": name, "tenant_id": tenant_id}).first()
    if found is None:
        raise not_found("profile", name)
    return _parsed(found.labels)


@lru_cache(maxsize=256)
def _parsed(labels_json: str) -> matching.Profile:
    """Pipelines match with a few profiles over and over: validating the same labels on
    every claim cost as much as reading them. A Profile is immutable, so one serves all;
    a profile that no longer validates raises here every time (errors are not cached)."""
    return parse_labels(json.loads(labels_json))


def list_profiles(session: Session, who: Principal) -> list[ProfileRow]:
    """The platform's profiles and the caller's tenant's (a platform admin: every one)."""
    query = select(ProfileRow).order_by(ProfileRow.name, ProfileRow.tenant_id.asc().nulls_first())
    return list(session.scalars(usable(query, ProfileRow.tenant_id, who)))
