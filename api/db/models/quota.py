"""Quotas and the usage they limit: one row per (tenant, project, GPU model) counter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from api.db.base import Base, IdColumn, NameColumn, UTCDateTime, utcnow

NONE_KEY = ""  # "no project" and "every model" in the key columns (a key cannot be NULL)


class QuotaRow(Base):
    """What a tenant (or one of its projects), for every model or one, holds now, and the
    limits on it when a quota is set (``enforced``).

    The counters are kept for every tenant, project and model that ever held anything,
    quota or not: a quota set later starts from the true usage, with no recount racing
    the claims. Every claim adds to its rows and every release takes back, in the claim's
    or release's own statement; the limit is checked on the row just updated, under the
    row's lock, so racing claims wait for each other and never pass a limit together.
    Lowering a limit below usage takes nothing away, so no CHECK ties usage to the limit.
    """

    __tablename__ = "quota"
    __table_args__ = (
        CheckConstraint(
            "used_gpus >= 0 AND used_nodes >= 0 AND borrowed_gpus >= 0", name="usage_not_negative"
        ),
        CheckConstraint(
            "(gpus IS NULL OR gpus >= 0) AND (nodes IS NULL OR nodes >= 0)",
            name="limits_not_negative",
        ),
    )

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    project_key: Mapped[str] = mapped_column(IdColumn, primary_key=True)  # a project id, or ""
    model_key: Mapped[str] = mapped_column(NameColumn, primary_key=True)  # casefolded, or ""
    gpu_model: Mapped[str | None] = mapped_column(NameColumn)  # as the quota was set
    enforced: Mapped[bool] = mapped_column(Boolean, default=False)  # a quota is set
    gpus: Mapped[int | None] = mapped_column(BigInteger)  # the limits; None: none
    nodes: Mapped[int | None] = mapped_column(Integer)
    used_gpus: Mapped[int] = mapped_column(BigInteger, default=0)
    used_nodes: Mapped[int] = mapped_column(Integer, default=0)
    borrowed_gpus: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
