"""The inventory's tables: tenants and projects, and the items (devices and VMs, their
GPUs, switches, InfiniBand ports).

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
