"""Quotas: set, delete and list them; read the limits a claim is under; give usage back.

The counters (api/db/models/quota.py) are added to by the claim's own statement
(api/db/claim.py) and taken back here, in the release's transaction. Who may set what is
DESIGN.md's: a platform admin any quota; a partner admin its own tenant's projects', never
above its tenant's limit; nobody else.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from api.db import audit
from api.db.base import utcnow
from api.db.models import AllocationRow, ProjectRow, QuotaRow, TenantRow
from api.db.scope import scoped
from api.db.tenant import project_id as find_project_id
from api.db.tenant import tenant_by_slug
from api.domain.access import Principal, Role
from api.domain.errors import FORBIDDEN, DomainError, bad_input, not_found
from api.domain.fields import MAX_NAME
from api.domain.quota import NONE_KEY, Limit, model_key

MAX_LIMIT = 1_000_000_000  # GPUs or nodes: generous, but stops typos like 1e12


@dataclass(frozen=True)
class QuotaInput:
    tenant: str
    project: str | None = None
    gpu_model: str | None = None
    gpus: int | None = None
    nodes: int | None = None


# -- reads ---------------------------------------------------------------------------------

_WITH_NAMES = (
    select(
        *QuotaRow.__table__.columns,
        TenantRow.slug.label("tenant"),
        ProjectRow.slug.label("project"),
    )
    .join(TenantRow, TenantRow.id == QuotaRow.tenant_id)
    .outerjoin(ProjectRow, ProjectRow.id == QuotaRow.project_key)
    .where(QuotaRow.enforced)
)
# Core columns, not ORM entities: read on every claim, on the claim's plain connection.
_LIMITS = _WITH_NAMES.where(
    QuotaRow.tenant_id == bindparam("tenant_id"),
    QuotaRow.project_key.in_([NONE_KEY, bindparam("project_key")]),
)


def limits_for(
    connection: Connection | Session, tenant_id: str, project_id: str | None
) -> tuple[Limit, ...]:
    """The quotas a claim of this tenant (and project) is under, with their usage now."""
    found = connection.execute(
        _LIMITS, {"tenant_id": tenant_id, "project_key": project_id or NONE_KEY}
    )
    return tuple(_limit(row, row.tenant, row.project) for row in found)


def _limit(row: Any, tenant: str, project: str | None) -> Limit:
    """A quota row (or a row of its columns) as the domain's Limit."""
    return Limit(
        tenant=tenant,
        project=project,
        project_key=row.project_key,
        model_key=row.model_key,
        gpu_model=row.gpu_model,
        gpus=row.gpus,
        nodes=row.nodes,
        used_gpus=row.used_gpus,
        used_nodes=row.used_nodes,
        borrowed_gpus=row.borrowed_gpus,
    )


def list_quotas(
    session: Session, who: Principal, tenant: str | None, project: str | None
) -> list[Limit]:
    """The quotas set, the caller's tenant's alone for a tenant's caller; by tenant, then
    tenant-wide before projects, then model."""
    query = scoped(_WITH_NAMES, QuotaRow.tenant_id, who)
    if tenant is not None:
        tenant_id = tenant_by_slug(session, who, tenant).id
        query = query.where(QuotaRow.tenant_id == tenant_id)
        if project is not None:
            query = query.where(QuotaRow.project_key == _project_key(session, tenant_id, project))
    elif project is not None:
        raise bad_input("project: needs a tenant (pass tenant)", field="project")
    rows = [_limit(row, row.tenant, row.project) for row in session.execute(query)]
    return sorted(rows, key=lambda q: (q.tenant, q.project or "", q.model_key))


class LimitsCache:
    """The limits each tenant's (and project's) claims are under, as this process last
    read them, with their usage: read at most once per ``ttl`` seconds per tenant and
    project, instead of once per claim.

    Staleness is safe: the claim's own statement checks the real counters under their
    lock, so an old read can only let a claim reach the database (which refuses it; the
    next attempt reads afresh) or steer it by an older usage. Refusing a claim with
    QUOTA_EXCEEDED is done on a fresh read only (api/db/allocation.py).
    """

    def __init__(self, ttl: float = 1.0) -> None:
        self.ttl = ttl
        self._read: dict[tuple[str, str | None], tuple[float, tuple[Limit, ...]]] = {}
        self._lock = threading.Lock()

    def limits(
        self,
        connection: Connection | Session,
        tenant_id: str,
        project_id: str | None,
        *,
        fresh: bool = False,
    ) -> tuple[tuple[Limit, ...], bool]:
        """The limits, and whether they were read just now."""
        key, now = (tenant_id, project_id), time.monotonic()
        with self._lock:
            known = self._read.get(key)
        if known is not None and not fresh and now - known[0] < self.ttl:
            return known[1], False
        found = limits_for(connection, tenant_id, project_id)
        with self._lock:
            self._read[key] = (now, found)
        return found, True


# -- writes --------------------------------------------------------------------------------


def set_quota(session: Session, who: Principal, given: QuotaInput) -> Limit:
    """Set (create or change) a quota's limits; its usage is the counters' already."""
    tenant_id = _may_set(session, who, given.tenant, given.project)
    project_key = _project_key(session, tenant_id, given.project) if given.project else NONE_KEY
    model = _gpu_model(given.gpu_model)
    key = model_key(model)
    for field, value in (("gpus", given.gpus), ("nodes", given.nodes)):
        if value is not None and not 0 <= value <= MAX_LIMIT:
            raise bad_input(f"{field}: must be between 0 and {MAX_LIMIT}, got {value}", field=field)
    if project_key != NONE_KEY:
        _within_tenant(session, tenant_id, key, given)
    existing = _read(session, tenant_id, project_key, key)
    # Copied now: reading the row again below refreshes this very object.
    before = _audited(existing) if existing is not None and existing.enforced else None
    dialect = session.get_bind().dialect.name
    insert = (postgresql if dialect == "postgresql" else sqlite).insert
    values = {"enforced": True, "gpus": given.gpus, "nodes": given.nodes, "gpu_model": model}
    statement = insert(QuotaRow).values(
        tenant_id=tenant_id,
        project_key=project_key,
        model_key=key,
        used_gpus=0,
        used_nodes=0,
        borrowed_gpus=0,
        updated_at=utcnow(),
        **values,
    )
    # An upsert, not a read then an insert: a claim may create the counters' row at the
    # same instant (its own upsert); whichever comes second updates the row the first made.
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id", "project_key", "model_key"],
            set_={**values, "updated_at": utcnow()},
        )
    )
    after = _read(session, tenant_id, project_key, key)
    assert after is not None  # just written
    audit.record(
        session,
        who,
        "set-quota",
        "quota",
        None,
        _name(given.tenant, given.project, model),
        tenant_id,
        before,
        _audited(after),
    )
    return _limit(after, given.tenant, given.project)


def delete_quota(
    session: Session, who: Principal, tenant: str, project: str | None, gpu_model: str | None
) -> Limit | None:
    """Lift a quota (its limits); None if none was set. Its counters stay: usage is kept
    whether or not a quota limits it."""
    tenant_id = _may_set(session, who, tenant, project)
    project_key = _project_key(session, tenant_id, project) if project else NONE_KEY
    model = _gpu_model(gpu_model)
    row = _read(session, tenant_id, project_key, model_key(model))
    if row is None or not row.enforced:
        return None
    lifted, before = _limit(row, tenant, project), _audited(row)
    session.execute(
        update(QuotaRow)
        .where(_key_is(tenant_id, project_key, model_key(model)))
        .values(enforced=False, gpus=None, nodes=None, gpu_model=None, updated_at=utcnow())
    )
    audit.record(
        session,
        who,
        "delete-quota",
        "quota",
        None,
        _name(tenant, project, model),
        tenant_id,
        before,  # read before the update, which the session applies to ``row``
        None,
    )
    return lifted


def give_back(session: Session, allocation: AllocationRow) -> None:
    """Take an allocation's usage off the counters it added to, in the caller's (the
    release's) transaction."""
    if allocation.tenant_id is None or not allocation.counted:
        return
    column = QuotaRow.borrowed_gpus if allocation.borrowed else QuotaRow.used_gpus
    for project_key, key, gpus, nodes in allocation.counted:
        session.execute(
            update(QuotaRow)
            .where(_key_is(allocation.tenant_id, project_key, key))
            .values({column: column - gpus, QuotaRow.used_nodes: QuotaRow.used_nodes - nodes})
            .execution_options(synchronize_session=False)
        )


# -- rules ---------------------------------------------------------------------------------


def _may_set(session: Session, who: Principal, tenant: str, project: str | None) -> str:
    """The tenant's id, if the caller may set this quota: a platform admin any; a partner
    admin its own tenant's projects'. Another tenant reads as FORBIDDEN whether or not
    it exists, so the answer tells nothing of it."""
    if who.role == Role.PARTNER_ADMIN:
        if tenant != who.tenant_slug:
            raise DomainError(FORBIDDEN, "a partner-admin sets only its own tenant's quotas")
        if project is None:
            raise DomainError(
                FORBIDDEN,
                "a partner-admin sets its projects' quotas; its tenant's limit is the "
                "platform's to set",
            )
    elif who.role != Role.PLATFORM_ADMIN:
        raise DomainError(
            FORBIDDEN, f"role {who.role.value!r} may not set quotas (needs an admin role)"
        )
    return tenant_by_slug(session, who, tenant).id


def _project_key(session: Session | Connection, tenant_id: str, project: str) -> str:
    found = find_project_id(session, tenant_id, project)
    if found is None:
        raise not_found("project", project)
    return found


def _gpu_model(given: str | None) -> str | None:
    if given is None:
        return None
    model = given.strip()
    if not model or len(model) > MAX_NAME:
        raise bad_input(
            f"gpuModel: must be a GPU modelNo of 1 to {MAX_NAME} characters, or null for "
            f"every model; got {given!r}",
            field="gpuModel",
        )
    return model


def _within_tenant(session: Session, tenant_id: str, key: str, given: QuotaInput) -> None:
    """A project's limit may not exceed its tenant's for the same model, nor the tenant's
    limit on every model (the projects' limits together may: overcommit)."""
    for tenant_key in {key, NONE_KEY}:
        tenant_row = _read(session, tenant_id, NONE_KEY, tenant_key)
        if tenant_row is None or not tenant_row.enforced:
            continue
        for field, value, ceiling in (
            ("gpus", given.gpus, tenant_row.gpus),
            ("nodes", given.nodes, tenant_row.nodes),
        ):
            if ceiling is None or value is None or value <= ceiling:
                continue  # no limit on the project: the tenant's still applies
            scope = f"{tenant_row.gpu_model} " if tenant_row.gpu_model else ""
            raise bad_input(
                f"{field}: {value} is above tenant {given.tenant!r}'s limit of {ceiling} "
                f"{scope}{field}",
                field=field,
            )


def _key_is(tenant_id: str, project_key: str, key: str) -> Any:
    return and_(
        QuotaRow.tenant_id == tenant_id,
        QuotaRow.project_key == project_key,
        QuotaRow.model_key == key,
    )


def _read(session: Session, tenant_id: str, project_key: str, key: str) -> QuotaRow | None:
    query = select(QuotaRow).where(_key_is(tenant_id, project_key, key))
    # Counters change under us (claims): read the row as it is now, not as first loaded.
    return session.scalar(query.execution_options(populate_existing=True))


def _name(tenant: str, project: str | None, model: str | None) -> str:
    """How the audit log and Terraform's import name a quota: ``tenant``,
    ``tenant/project``, ``tenant/project/model``, or ``tenant//model``."""
    if model is None:
        return tenant if project is None else f"{tenant}/{project}"
    return f"{tenant}/{project or ''}/{model}"


def _audited(row: QuotaRow) -> dict[str, Any]:
    return {"gpus": row.gpus, "nodes": row.nodes}
