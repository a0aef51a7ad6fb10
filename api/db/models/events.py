"""Events out to portals (DESIGN.md "Events"): the webhooks that want them, the outbox the
changes write them to, and each webhook's deliveries of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from api.db.base import Base, IdColumn, NameColumn, UTCDateTime, new_id, utcnow


class WebhookRow(Base):
    """Where a tenant's (or, without one, the platform's) events are POSTed. The secret
    signs each delivery (HMAC-SHA256), so it is kept encrypted (GPUINV_SECRET_KEY), not
    hashed as tokens are."""

    __tablename__ = "webhook"

    id: Mapped[str] = mapped_column(IdColumn, primary_key=True, default=new_id)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(Text)  # Fernet token of the secret
    events: Mapped[list[str]] = mapped_column(JSON)  # event types; empty: every type
    tenant_id: Mapped[str | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(NameColumn)


class EventRow(Base):
    """The outbox: one event per change, written in the change's own transaction (so an
    event exists exactly when its change was committed) when some webhook may want it;
    the dispatcher fans it out to deliveries and sends them."""

    __tablename__ = "event"
    __table_args__ = (
        # What the dispatcher has still to fan out: a handful of rows, whatever the outbox holds.
        Index(
            "ix_event_to_fan_out",
            "seq",
            postgresql_where=text("NOT fanned_out"),
            sqlite_where=text("NOT fanned_out"),
        ),
        {"sqlite_autoincrement": True},  # never reuse a number, even if pruned
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(IdColumn, unique=True, default=new_id)  # CloudEvents id
    type: Mapped[str] = mapped_column(String(64))  # io.gpuinv.allocation.created, ...
    subject: Mapped[str] = mapped_column(IdColumn)  # the allocation's, request's or device's id
    tenant_id: Mapped[str | None] = mapped_column(IdColumn, index=True)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    data: Mapped[Any] = mapped_column(JSON)  # the object as the GraphQL API renders it
    # Whether the dispatcher has made this event's deliveries (migration 0010). A flag, not
    # a cursor over ``seq``: on PostgreSQL a transaction may commit a lower number after a
    # higher one was read, and a cursor would pass over it for good.
    fanned_out: Mapped[bool] = mapped_column(Boolean, server_default=false())


class WebhookDeliveryRow(Base):
    """One event to one webhook, until delivered (a 2xx) or given up; every attempt is
    kept in ``attempts_log``."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_seq"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        # An earlier delivery of the same subject to the same webhook holds a later one back
        # (migration 0010): looked up for every due delivery.
        Index("ix_webhook_delivery_subject", "webhook_id", "subject", "event_seq"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    event_seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("event.seq", ondelete="CASCADE")
    )
    subject: Mapped[str] = mapped_column(IdColumn)  # the event's: delivered in order per subject
    status: Mapped[str] = mapped_column(String(16), default="pending")  # delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    response_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    attempts_log: Mapped[list[Any]] = mapped_column(JSON, default=list)
