"""The tables. One class per noun; the repository modules beside this one query them.

Capacity is stored twice on purpose: ``total_*`` is what the hardware has, ``free_*`` what
is not allocated. ``free_*`` is the column claims decrement, and CHECK constraints keep it
between 0 and the total, so no code path (or racing replica) can over-allocate.
``generation`` guards every update (compare-and-swap, as OpenStack Placement does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from api.db.base import Base, IdColumn, NameColumn, UTCDateTime, new_id, utcnow

STATUSES = "('available','allocated','reserved','maintenance','offline','retired')"


def namespace_unique(table: str, *columns: str) -> tuple[Index, Index, Index]:
    """Names are unique within a namespace: a tenant, or the platform (no tenant).

    Two partial unique indexes, because a plain UNIQUE (tenant_id, name) would let any
    number of platform items share a name (NULLs are distinct in SQL) and SQLite has no
    NULLS NOT DISTINCT. Every lookup by name goes through (tenant_id, name) too, so the
    indexes also serve the upserts of imports and the sync (DESIGN.md "Namespaces").
    """
    return (
        # Lists ordered by name, and lookups by name across namespaces (an import's batch,
        # the sync), read this one: the partial indexes serve one namespace at a time.
        Index(f"ix_{table}_name", *columns),
        Index(
            f"uq_{table}_tenant_name",
            "tenant_id",
            *columns,
            unique=True,
            sqlite_where=text("tenant_id IS NOT NULL"),
            postgresql_where=text("tenant_id IS NOT NULL"),
        ),
        Index(
            f"uq_{table}_platform_name",
            *columns,
            unique=True,
            sqlite_where=text("tenant_id IS NULL"),
            postgresql_where=text("tenant_id IS NULL"),
        ),
    )


class TenantRow(Base):
    __tablename__ = "tenant"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(NameColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProjectRow(Base):
    __tablename__ = "project"
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(NameColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class _ItemColumns:
    """What every inventory item has (DESIGN.md "The inventory")."""

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    status: Mapped[str] = mapped_column(String(16), default="available")
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenant.id"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("project.id"))
    source_system: Mapped[str] = mapped_column(String(16), default="manual")
    source_id: Mapped[int | None] = mapped_column(BigInteger)
    source_url: Mapped[str | None] = mapped_column(Text)
    # Conditions an operator must look at, e.g. [{"code": "NETBOX_DELETED", "since": ...}]:
    # set by the NetBox sync on an allocated item instead of retiring it under its user.
    attention: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # The ORM adds "AND generation = :old" to every UPDATE and raises StaleDataError
        # when another writer got there first; we turn that into CONCURRENT_UPDATE.
        # A mixin: __table__ is the model's that mixes it in (mypy sees no such attribute).
        return {"version_id_col": cls.__table__.c.generation}  # type: ignore[attr-defined]


class DeviceRow(_ItemColumns, Base):
    """A physical server (kind ``baremetal``) or a VM (kind ``vm``): one document shape."""

    __tablename__ = "device"
    __table_args__ = (
        *namespace_unique("device", "kind", "hostname"),
        CheckConstraint("kind in ('baremetal','vm')", name="kind"),
        CheckConstraint(f"status in {STATUSES}", name="status"),
        CheckConstraint(
            "total_cpu >= 0 AND total_memory_mb >= 0 AND total_storage_gb >= 0 AND total_gpus >= 0",
            name="totals_not_negative",
        ),
        CheckConstraint("free_cpu >= 0 AND free_cpu <= total_cpu", name="free_cpu_in_range"),
        CheckConstraint(
            "free_memory_mb >= 0 AND free_memory_mb <= total_memory_mb", name="free_memory_in_range"
        ),
        CheckConstraint(
            "free_storage_gb >= 0 AND free_storage_gb <= total_storage_gb",
            name="free_storage_in_range",
        ),
        CheckConstraint("free_gpus >= 0 AND free_gpus <= total_gpus", name="free_gpus_in_range"),
        Index("ix_device_kind_status_hostname", "kind", "status", "hostname"),
        Index("ix_device_kind_site", "kind", "site"),
        # Capacity views read only these columns, grouped in this order: the index covers
        # the query (no table reads) and hands the groups over sorted (no sort step).
        Index(
            "ix_device_capacity",
            "kind",
            "site",
            "tenant_id",
            "gpu_vendor",
            "gpu_model",
            "status",
            "healthy",
            "total_cpu",
            "free_cpu",
            "total_memory_mb",
            "free_memory_mb",
            "total_storage_gb",
            "free_storage_gb",
            "total_gpus",
            "free_gpus",
        ),
    )

    kind: Mapped[str] = mapped_column(String(16), default="baremetal")
    hostname: Mapped[str] = mapped_column(NameColumn)
    manufacturer: Mapped[str | None] = mapped_column(NameColumn)
    model: Mapped[str | None] = mapped_column(NameColumn)
    serial: Mapped[str | None] = mapped_column(NameColumn)
    total_cpu: Mapped[int] = mapped_column(Integer, default=0)
    total_memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    total_storage_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    total_gpus: Mapped[int] = mapped_column(Integer, default=0)
    free_cpu: Mapped[int] = mapped_column(Integer, default=0)
    free_memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    free_storage_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    free_gpus: Mapped[int] = mapped_column(Integer, default=0)
    # What all its GPUs are, when they are all alike (null: none, or a mix): capacity by
    # GPU model groups devices on these instead of joining every GPU row.
    gpu_vendor: Mapped[str | None] = mapped_column(NameColumn)
    gpu_model: Mapped[str | None] = mapped_column(NameColumn)
    site: Mapped[str | None] = mapped_column(NameColumn)
    location: Mapped[str | None] = mapped_column(NameColumn)
    rack: Mapped[str | None] = mapped_column(NameColumn)
    cluster: Mapped[str | None] = mapped_column(NameColumn)
    host: Mapped[str | None] = mapped_column(NameColumn)
    # Health conditions (api/domain/health.py) on the server, its GPUs and its ports; SQL
    # NULL when healthy, so "healthy" is an indexable IS NULL in capacity queries.
    health: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    # health IS NULL, as a column of its own: indexable on every backend (PostgreSQL has
    # no btree for json), so the capacity index covers it. Written with health, only.
    healthy: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))


class GpuRow(Base):
    """One row per physical GPU of a device."""

    __tablename__ = "gpu"
    __table_args__ = (
        UniqueConstraint("device_id", "index"),
        Index("ix_gpu_vendor_model", "vendor_code", "model_no"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    vendor_code: Mapped[str] = mapped_column(NameColumn)
    model_no: Mapped[str] = mapped_column(NameColumn)
    memory_mb: Mapped[int | None] = mapped_column(BigInteger)


class SwitchRow(_ItemColumns, Base):
    __tablename__ = "switch"
    __table_args__ = (
        *namespace_unique("switch", "name"),
        CheckConstraint(f"status in {STATUSES}", name="status"),
    )

    name: Mapped[str] = mapped_column(NameColumn)
    manufacturer: Mapped[str | None] = mapped_column(NameColumn)
    model: Mapped[str | None] = mapped_column(NameColumn)
    role: Mapped[str | None] = mapped_column(NameColumn)
    site: Mapped[str | None] = mapped_column(NameColumn)
    management_address: Mapped[str | None] = mapped_column(NameColumn)
    fabric: Mapped[str | None] = mapped_column(NameColumn)


class InfinibandRow(_ItemColumns, Base):
    """An InfiniBand port: on a server (an HCA port) or on a switch. Named ``device:port``.

    ``device`` is the name of the machine or switch it sits on, in the port's namespace;
    ``device_id`` links the ports of a device or VM to it, so that they are that machine's
    and no other's (a VM and a device, or a switch, may share a name) and go with it when
    it is deleted.
    """

    __tablename__ = "infiniband"
    __table_args__ = (
        *namespace_unique("infiniband", "name"),
        CheckConstraint(f"status in {STATUSES}", name="status"),
        CheckConstraint("rate_gbps IS NULL OR rate_gbps >= 0", name="rate_not_negative"),
        Index("ix_infiniband_device_port", "device", "port"),
    )

    name: Mapped[str] = mapped_column(String(511))
    device_id: Mapped[str | None] = mapped_column(
        ForeignKey("device.id", ondelete="CASCADE"), index=True
    )
    device: Mapped[str] = mapped_column(NameColumn)
    port: Mapped[str] = mapped_column(NameColumn)
    rate_gbps: Mapped[int | None] = mapped_column(Integer)
    fabric: Mapped[str | None] = mapped_column(NameColumn)
    switch: Mapped[str | None] = mapped_column(NameColumn)


class ApiTokenRow(Base):
    """A bearer token. Only its SHA-256 is stored: a leaked database leaks no credentials."""

    __tablename__ = "api_token"
    __table_args__ = (
        CheckConstraint(
            "role in ('platform-admin','partner-admin','provisioner','viewer')", name="role"
        ),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(NameColumn)
    role: Mapped[str] = mapped_column(String(32))
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AuditEventRow(Base):
    """Every change: who, what, before, after, when. Written in the change's transaction."""

    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_event_object", "object_kind", "object_id"),
        Index("ix_audit_event_at", "at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(NameColumn)
    action: Mapped[str] = mapped_column(String(32))
    object_kind: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str | None] = mapped_column(IdColumn)
    object_name: Mapped[str | None] = mapped_column(String(511))
    tenant_id: Mapped[str | None] = mapped_column(IdColumn, index=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str | None] = mapped_column(String(64))


class ProfileRow(Base):
    """A saved compute profile: its two labels (seed 001), by name."""

    __tablename__ = "profile"
    __table_args__ = namespace_unique("profile", "name")

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(NameColumn)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    inventory_type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AllocationRow(Base):
    """What one matchDevice took for one environment, until it is released.

    At most one active allocation per (scope, environment): a partial unique index, so two
    replicas racing on the same environment cannot both allocate.
    """

    __tablename__ = "allocation"
    __table_args__ = (
        Index(
            "uq_allocation_active_environment",
            "scope",
            "environment",
            unique=True,
            sqlite_where=text("released_at IS NULL"),
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_allocation_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    environment: Mapped[str] = mapped_column(NameColumn)
    scope: Mapped[str] = mapped_column(IdColumn)  # the tenant id, or "*" for platform-wide
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenant.id"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("project.id"))
    profile: Mapped[str | None] = mapped_column(NameColumn)
    inventory_type: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    request_hash: Mapped[str] = mapped_column(String(64))
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    device_details: Mapped[Any] = mapped_column(JSON)
    explanation: Mapped[dict[str, Any]] = mapped_column(JSON)
    actor: Mapped[str] = mapped_column(NameColumn)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(NameColumn)


class AllocationDeviceRow(Base):
    """One device an allocation holds, whole (exclusive) or as a slice, with the amounts.

    A partial unique index makes "an exclusive device belongs to at most one active
    allocation" a fact of the database, whatever any replica's Python believes.
    """

    __tablename__ = "allocation_device"
    __table_args__ = (
        Index(
            "uq_allocation_device_exclusive_active",
            "device_id",
            unique=True,
            sqlite_where=text("active AND exclusive"),
            postgresql_where=text("active AND exclusive"),
        ),
        Index("ix_allocation_device_device_active", "device_id", "active"),
        CheckConstraint(
            "cpu >= 0 AND memory_mb >= 0 AND storage_gb >= 0 AND gpus >= 0",
            name="amounts_not_negative",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    allocation_id: Mapped[str] = mapped_column(
        ForeignKey("allocation.id", ondelete="CASCADE"), index=True
    )
    device_id: Mapped[str] = mapped_column(ForeignKey("device.id", ondelete="CASCADE"))
    hostname: Mapped[str] = mapped_column(NameColumn)
    position: Mapped[int] = mapped_column(Integer)
    exclusive: Mapped[bool] = mapped_column(Boolean)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    cpu: Mapped[int] = mapped_column(Integer, default=0)
    memory_mb: Mapped[int] = mapped_column(BigInteger, default=0)
    storage_gb: Mapped[int] = mapped_column(BigInteger, default=0)
    gpus: Mapped[int] = mapped_column(Integer, default=0)


class DeviceChangeRow(Base):
    """A feed of changed devices, written by database triggers on device, gpu and
    infiniband: every API replica polls it to keep its in-memory match index current,
    and no code path can forget to write it."""

    __tablename__ = "device_change"
    __table_args__ = {"sqlite_autoincrement": True}  # never reuse a number, even if pruned

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    device_id: Mapped[str] = mapped_column(IdColumn)
    changed_at: Mapped[datetime] = mapped_column(
        UTCDateTime, server_default=func.current_timestamp()
    )
    # "device", "gpu" or "infiniband": only a change of the device row itself can be a
    # claim or release touching nothing but free amounts and status.
    origin: Mapped[str] = mapped_column(String(16), server_default="device")


class SyncStateRow(Base):
    """One row per external source ("netbox"): how its last sync went, and which worker
    leads (a lease that the leader renews; another worker takes over once it lapses)."""

    __tablename__ = "sync_state"

    source: Mapped[str] = mapped_column(String(32), primary_key=True)
    leader: Mapped[str | None] = mapped_column(NameColumn)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
