"""Provision requests and the approval policies that decide some of them at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from api.db.base import Base, IdColumn, NameColumn, UTCDateTime, new_id, utcnow

# The states in which a request may still become an allocation (api/domain's OPEN), as SQL.
_OPEN = "state IN ('PENDING_APPROVAL', 'APPROVED', 'QUEUED')"


class ProvisionRequestRow(Base):
    """A request for devices that may wait: for approval, for ``starts_at``, for capacity.

    What it asks for is what a matchDevice takes (kept as given, and matched at
    fulfilment, so a profile changed meanwhile is read as it is then). At most one open
    request per (scope, environment): a partial unique index, as for allocations.
    """

    __tablename__ = "provision_request"
    __table_args__ = (
        Index(
            "uq_provision_request_open_environment",
            "scope",
            "environment",
            unique=True,
            sqlite_where=text(_OPEN),
            postgresql_where=text(_OPEN),
        ),
        Index("ix_provision_request_state", "state", "priority"),
    )

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(IdColumn)  # the tenant id, or "*" for platform-wide
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenant.id", ondelete="CASCADE"))
    project_id: Mapped[str | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    environment: Mapped[str] = mapped_column(NameColumn)
    profile: Mapped[str | None] = mapped_column(NameColumn)
    labels: Mapped[Any | None] = mapped_column(JSON)
    variables: Mapped[dict[str, Any]] = mapped_column(JSON)
    ttl_seconds: Mapped[int | None] = mapped_column(Integer)
    preemptible: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    priority: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    gpus: Mapped[int] = mapped_column(Integer, default=0)  # asked for: per node, times nodes
    reason: Mapped[str] = mapped_column(String(2000))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str] = mapped_column(String(24))
    requested_by: Mapped[str] = mapped_column(NameColumn)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_by: Mapped[str | None] = mapped_column(NameColumn)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(2000))
    # Entered the queue (approved): the queue's "age"; and since when it has been at the
    # head without fitting (the backfill limit counts from then).
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    blocked_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    allocation_id: Mapped[str | None] = mapped_column(ForeignKey("allocation.id"))
    # The last attempt: its funnel, and why it did not fulfil ({code, message}).
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ApprovalPolicyRow(Base):
    """A tenant's approval policy: requests for at most ``max_gpus`` GPUs, and those of the
    listed projects, are approved at once (api/domain/provision_request.ApprovalPolicy)."""

    __tablename__ = "approval_policy"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    max_gpus: Mapped[int | None] = mapped_column(Integer)
    project_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
