"""Saved profiles: labels by name, validated when saved (and again when used)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from api.db import audit
from api.db.models import Profile
from api.domain.access import Principal
from api.domain.errors import bad_input, not_found
from api.domain.matching.profile import parse_labels


def save_profile(session: Session, who: Principal, name: str, labels: Any) -> Profile:
    """Create or replace a profile. A partner admin's profiles are its tenant's own."""
    who.require_inventory_write()
    name = name.strip()
    if not name or len(name) > 255:
        raise bad_input("name: must be 1 to 255 characters", field="name")
    parsed = parse_labels(labels)
    profile = session.scalar(select(Profile).where(Profile.name == name))
    if profile is not None and not _visible(profile, who):
        raise bad_input(f"name: profile {name!r} is taken", field="name")
    before = None if profile is None else {"labels": profile.labels}
    if profile is None:
        profile = Profile(name=name, tenant_id=None if who.is_platform_admin else who.tenant_id)
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


def _visible(profile: Profile, who: Principal) -> bool:
    return who.is_platform_admin or profile.tenant_id in (None, who.tenant_id)


def get_profile(session: Session, who: Principal, name: str) -> Profile:
    profile = session.scalar(select(Profile).where(Profile.name == name))
    if profile is None or not _visible(profile, who):
        raise not_found("profile", name)
    return profile


def list_profiles(session: Session, who: Principal) -> list[Profile]:
    query = select(Profile).order_by(Profile.name)
    if not who.is_platform_admin:
        query = query.where(or_(Profile.tenant_id.is_(None), Profile.tenant_id == who.tenant_id))
    return list(session.scalars(query))
