"""Tenants (cloud partners) and their projects."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from api.db import audit
from api.db.models import ProjectRow, TenantRow
from api.db.scope import scoped
from api.domain.access import Principal
from api.domain.errors import InvalidField, bad_input, not_found
from api.domain.fields import MAX_NAME

SLUG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_slug(field: str, slug: str) -> str:
    slug = slug.strip()
    if not SLUG.match(slug):
        raise bad_input(
            f"{field}: {slug!r} is not a valid slug (lower-case letters, digits "
            "and '-', 1 to 63 characters, no '-' at either end)",
            field=field,
        )
    return slug


def check_name(field: str, name: str | None, default: str) -> str:
    """A display name: 1 to 255 characters (the column's width), the slug when absent."""
    name = (name or default).strip() or default
    if len(name) > MAX_NAME:
        raise bad_input(f"{field}: at most {MAX_NAME} characters, got {len(name)}", field=field)
    return name


def create_tenant(session: Session, who: Principal, slug: str, name: str | None) -> TenantRow:
    who.require_platform_admin("create tenants")
    slug = check_slug("slug", slug)
    name = check_name("name", name, slug)
    if session.scalar(select(TenantRow.id).where(TenantRow.slug == slug)) is not None:
        raise bad_input(f"slug: tenant {slug!r} already exists", field="slug")
    tenant = TenantRow(slug=slug, name=name)
    session.add(tenant)
    session.flush()
    audit.record(
        session,
        who,
        "create",
        "tenant",
        tenant.id,
        slug,
        tenant.id,
        after={"slug": slug, "name": tenant.name},
    )
    return tenant


def list_tenants(session: Session, who: Principal) -> list[TenantRow]:
    return list(
        session.scalars(scoped(select(TenantRow).order_by(TenantRow.slug), TenantRow.id, who))
    )


def tenant_by_slug(session: Session, who: Principal, slug: str) -> TenantRow:
    tenant = session.scalar(select(TenantRow).where(TenantRow.slug == slug))
    if tenant is None or not who.may_see(tenant.id):  # another's reads as unknown
        raise not_found("tenant", slug)
    return tenant


def list_projects(session: Session, who: Principal, tenant_slug: str) -> list[ProjectRow]:
    """A tenant's projects, by slug; another tenant's slug reads as unknown."""
    tenant = tenant_by_slug(session, who, tenant_slug)
    query = select(ProjectRow).where(ProjectRow.tenant_id == tenant.id).order_by(ProjectRow.slug)
    return list(session.scalars(query))


_PROJECT_ID = select(ProjectRow.id).where(
    ProjectRow.tenant_id == bindparam("tenant_id"), ProjectRow.slug == bindparam("slug")
)


def project_id(connection: Session | Connection, tenant_id: str, slug: str) -> str | None:
    """A project's id by its tenant and slug: one row, for matchDevice's ``project``
    (the whole Directory is two reads of every tenant and project)."""
    return connection.execute(_PROJECT_ID, {"tenant_id": tenant_id, "slug": slug}).scalar()


def create_project(
    session: Session, who: Principal, tenant_slug: str, slug: str, name: str | None
) -> ProjectRow:
    who.require_inventory_write()
    tenant = tenant_by_slug(session, who, tenant_slug)
    slug = check_slug("slug", slug)
    name = check_name("name", name, slug)
    exists = select(ProjectRow.id).where(ProjectRow.tenant_id == tenant.id, ProjectRow.slug == slug)
    if session.scalar(exists) is not None:
        raise bad_input(
            f"slug: project {slug!r} already exists in tenant {tenant.slug!r}", field="slug"
        )
    project = ProjectRow(tenant_id=tenant.id, slug=slug, name=name)
    session.add(project)
    session.flush()
    audit.record(
        session,
        who,
        "create",
        "project",
        project.id,
        f"{tenant.slug}/{slug}",
        tenant.id,
        after={"tenant": tenant.slug, "slug": slug, "name": project.name},
    )
    return project


@dataclass
class Directory:
    """Tenant and project slugs by id, loaded once per unit of work.

    Tenants and projects number in the hundreds at most, so one query each beats joins
    on every item query and keeps the renderers simple.
    """

    tenant_slug: dict[str, str]
    tenant_id: dict[str, str]
    project_key: dict[str, tuple[str, str]]  # id -> (tenant_id, slug)
    project_id: dict[tuple[str, str], str]  # (tenant_id, slug) -> id

    @classmethod
    def load(cls, session: Session | Connection) -> Directory:
        tenants = session.execute(select(TenantRow.id, TenantRow.slug)).all()
        projects = session.execute(
            select(ProjectRow.id, ProjectRow.tenant_id, ProjectRow.slug)
        ).all()
        return cls(
            tenant_slug={t.id: t.slug for t in tenants},
            tenant_id={t.slug: t.id for t in tenants},
            project_key={p.id: (p.tenant_id, p.slug) for p in projects},
            project_id={(p.tenant_id, p.slug): p.id for p in projects},
        )

    def project_slug(self, project_id: str | None) -> str | None:
        return self.project_key[project_id][1] if project_id else None

    def tenant(self, tenant_id: str | None) -> str | None:
        return self.tenant_slug.get(tenant_id) if tenant_id else None

    def namespace(self, who: Principal, tenant: str | None) -> str | None:
        """Where a document naming ``tenant`` lives: that tenant (if the caller may write
        there), else the caller's own tenant; None is the platform. Raises InvalidField as
        ``resolve`` does."""
        return self.resolve(who, tenant, None)[0]

    def resolve(
        self,
        who: Principal,
        tenant: str | None,
        project: str | None,
        current: tuple[str | None, str | None] = (None, None),
    ) -> tuple[str | None, str | None]:
        """Turn the slugs a document names into ids, within what the caller may touch.

        Raises InvalidField; bulk callers attach row numbers. An unknown tenant
        and another tenant's slug read the same, so existence is not revealed.
        """
        current_tenant_id, current_project_id = current
        if tenant is None:
            tenant_id = current_tenant_id if current_tenant_id is not None else who.namespace
        else:
            tenant_id = self.tenant_id.get(tenant)
            if tenant_id is None or not who.may_see(tenant_id):
                raise InvalidField("tenant", f"tenant {tenant!r} not found")
        if project is None:  # absent: keep the project while the tenant stays the same
            return tenant_id, current_project_id if tenant_id == current_tenant_id else None
        if tenant_id is None:
            raise InvalidField("project", f"project {project!r} needs a tenant")
        project_id = self.project_id.get((tenant_id, project))
        if project_id is None:
            raise InvalidField(
                "project",
                f"project {project!r} not found in tenant {self.tenant_slug[tenant_id]!r}",
            )
        return tenant_id, project_id
