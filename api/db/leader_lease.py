"""One leader across replicas, for work that must not run twice at once: the NetBox sync
(source "netbox"), the webhook dispatcher ("webhooks").

A lease row in sync_state, not an advisory lock, so it works the same on SQLite and
PostgreSQL and survives a crashed leader: its lease simply runs out and another worker
takes over. ``syncState(source:)`` shows who holds it.

These own their transactions (each its own, short), so they take the sessionmaker.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api.db.base import utcnow
from api.db.models import SyncStateRow
from api.db.session import rowcount, unit_of_work
from api.domain.errors import DomainError


def take_lead(
    sessions: sessionmaker[Session],
    source: str,
    worker: str,
    lease: timedelta,
    now: datetime | None = None,
) -> bool:
    """Become (or stay) the one worker of ``source``; True if we lead.

    A leader with more than half of its lease left is answered from a read, so a leader's
    frequent rounds mostly cost no write (on SQLite, no turn at the single writer's lock);
    past half, the lease is renewed in full, and the renewal marks ``last_attempt_at``.
    """
    now = now or utcnow()
    with sessions() as session:
        row = session.get(SyncStateRow, source)
        if row is not None and row.lease_until is not None:
            if row.leader == worker and row.lease_until - now > lease / 2:
                return True
            if row.leader not in (None, worker) and row.lease_until > now:
                return False
    if row is None:
        try:
            with unit_of_work(sessions) as session:
                session.add(SyncStateRow(source=source))
        except (IntegrityError, DomainError):  # another worker made it at the same moment
            pass
    leader, until = SyncStateRow.leader, SyncStateRow.lease_until
    with unit_of_work(sessions) as session:
        taken = session.execute(
            update(SyncStateRow)
            .where(SyncStateRow.source == source)
            .where(or_(leader == worker, leader.is_(None), until.is_(None), until < now))
            .values(leader=worker, lease_until=now + lease, last_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
        return rowcount(taken) == 1


def give_up_lead(sessions: sessionmaker[Session], source: str, worker: str) -> None:
    """Let the lease go, so another worker takes over at once rather than when it lapses."""
    with unit_of_work(sessions) as session:
        session.execute(
            update(SyncStateRow)
            .where(SyncStateRow.source == source, SyncStateRow.leader == worker)
            .values(leader=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
