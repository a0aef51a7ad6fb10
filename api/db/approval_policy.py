"""Tenants' approval policies: which provision requests are approved without a person
(api/domain/provision_request.ApprovalPolicy). A partner-admin sets its own tenant's, a
platform admin any tenant's; every change is audited."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import audit
from api.db.models import ApprovalPolicyRow, ProjectRow, TenantRow
from api.db.tenant import project_id as find_project_id
from api.db.tenant import tenant_by_slug
from api.domain.access import Principal
from api.domain.errors import FORBIDDEN, DomainError, bad_input, not_found
from api.domain.provision_request import ApprovalPolicy

MAX_GPUS = 1_000_000


@dataclass(frozen=True)
class PolicyView:
    tenant: str
    max_gpus: int | None
    projects: list[str]


def approval_policy_of(session: Session, tenant_id: str | None) -> ApprovalPolicy | None:
    if tenant_id is None:
        return None
    row = session.get(ApprovalPolicyRow, tenant_id)
    if row is None:
        return None
    return ApprovalPolicy(row.max_gpus, frozenset(row.project_ids))


def read_policy(session: Session, who: Principal, tenant: str) -> PolicyView | None:
    row_tenant = tenant_by_slug(session, who, tenant)
    row = session.get(ApprovalPolicyRow, row_tenant.id)
    return None if row is None else _policy_view(session, row_tenant, row)


def set_policy(
    session: Session, who: Principal, tenant: str, max_gpus: int | None, projects: list[str]
) -> PolicyView:
    """A partner-admin sets its own tenant's policy; a platform admin any tenant's."""
    row_tenant = tenant_by_slug(session, who, tenant)
    if not who.may_decide_for(row_tenant.id):
        raise DomainError(
            FORBIDDEN,
            f"role {who.role.value!r} may not set approval policies: a partner-admin of the "
            "tenant or a platform admin does",
        )
    if max_gpus is not None and not 0 <= max_gpus <= MAX_GPUS:
        raise bad_input(
            f"maxGpus: must be between 0 and {MAX_GPUS}, got {max_gpus}", field="maxGpus"
        )
    ids = []
    for slug in dict.fromkeys(projects):
        found = find_project_id(session, row_tenant.id, slug)
        if found is None:
            raise not_found("project", slug)
        ids.append(found)
    row = session.get(ApprovalPolicyRow, row_tenant.id)
    before = None if row is None else {"maxGpus": row.max_gpus, "projects": row.project_ids}
    if row is None:
        row = ApprovalPolicyRow(tenant_id=row_tenant.id)
        session.add(row)
    row.max_gpus, row.project_ids = max_gpus, ids
    session.flush()
    audit.record(
        session,
        who,
        "set",
        "approval_policy",
        row_tenant.id,
        row_tenant.slug,
        row_tenant.id,
        before,
        {"maxGpus": max_gpus, "projects": ids},
    )
    return _policy_view(session, row_tenant, row)


def _policy_view(session: Session, tenant: TenantRow, row: ApprovalPolicyRow) -> PolicyView:
    found = session.execute(
        select(ProjectRow.id, ProjectRow.slug).where(ProjectRow.id.in_(row.project_ids))
    )
    slugs = {project.id: project.slug for project in found}
    projects = sorted(slugs[i] for i in row.project_ids if i in slugs)
    return PolicyView(tenant.slug, row.max_gpus, projects)
