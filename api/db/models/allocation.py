"""The matchmaking's tables: saved profiles, allocations and the devices they hold, and
the feed of changed devices that keeps every replica's match index current."""

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
    false,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.db.base import Base, IdColumn, NameColumn, UTCDateTime, new_id, utcnow
from api.db.models.inventory import namespace_unique
from api.domain.preemption import PREEMPTED_BY

# ix_allocation_preempted's condition (api/db/allocation_query.in_state's PREEMPTED).
RELEASED_BY_PREEMPTION = text(f"released_by = '{PREEMPTED_BY}'")


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
        # The preempted ones, by tenant: /metrics counts them on every scrape, and released
        # allocations are kept, so without it each scrape read the whole history.
        Index(
            "ix_allocation_preempted",
            "tenant_id",
            sqlite_where=RELEASED_BY_PREEMPTION,
            postgresql_where=RELEASED_BY_PREEMPTION,
        ),
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
    # DESIGN.md "Sharing the fleet": willing to be preempted; beyond its GPU quota (then
    # its GPUs count as borrowed); its priority (stored now, used by the queue).
    preemptible: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    borrowed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The quota counters it added to, as [project_key, model_key, gpus, nodes]: its release
    # takes exactly these back. None: a platform-wide allocation, counted nowhere.
    counted: Mapped[list[Any] | None] = mapped_column(JSON)
    # Being preempted (DESIGN.md "Priority, preemption"): released at ``preempt_at`` and
    # its devices given to the request ``preempted_for``. Both None again if the request
    # no longer needs them (cancelled, or fulfilled elsewhere) before then.
    preempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    preempted_for: Mapped[str | None] = mapped_column(IdColumn)


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
