"""The provision request queue's worker: runs api/db/request_queue.serve in one process
of the fleet at a time (a lease in sync_state, ``syncState(source: "requests")``), when
there is something to do.

Every ``poll`` seconds each replica looks (two index reads, no write): is any request open,
or any allocation being preempted? If so, the leader serves a round when something changed
since its last one: the device feed moved (a release, a lease ending, a retirement undone,
a claim), a request moved, a preemption or a ``startsAt`` fell due; and every 30 s
regardless (a quota raised, the approval time of a pending request ending). Rounds run in a
worker thread: the event loop keeps answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import request_queue
from api.db.base import utcnow
from api.db.candidates import LiveIndex
from api.db.leader_lease import give_up_lead, take_lead
from api.db.models import AllocationRow, DeviceChangeRow, ProvisionRequestRow
from api.domain.provision_request import OPEN
from api.settings import Settings

log = logging.getLogger("gpuinv.requests")
LEASE = "requests"  # the queue's row in sync_state
EVERY = timedelta(seconds=30)  # a round at least this often while anything is open

type Signature = tuple[object, ...]


class QueueWorker:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        live: LiveIndex,
        policy: request_queue.QueuePolicy,
        poll: float = 1.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions, self.live, self.policy, self.poll, self.clock = (
            sessions,
            live,
            policy,
            poll,
            clock,
        )
        self.worker = f"{socket.gethostname()}:{os.getpid()}:queue"
        self.lease = timedelta(seconds=max(30.0, 10 * poll))
        self._seen: Signature | None = None
        self._served_at: datetime | None = None

    @classmethod
    def of(
        cls, sessions: sessionmaker[Session], live: LiveIndex, settings: Settings
    ) -> QueueWorker:
        policy = request_queue.QueuePolicy(
            grace=timedelta(seconds=settings.preemption_grace_seconds),
            backfill_window=timedelta(seconds=settings.queue_backfill_seconds),
            approval_ttl=timedelta(hours=settings.request_approval_hours),
        )
        return cls(sessions, live, policy, settings.queue_poll_seconds)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.run_once()
                except Exception:  # the database away for a moment: the next round retries
                    log.exception("a request queue round failed")
                await asyncio.sleep(self.poll)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(give_up_lead, self.sessions, LEASE, self.worker)

    async def run_once(self) -> request_queue.Round | None:
        """One look, and a round if one is due; None when there was nothing to do."""
        now = self.clock()
        seen = await asyncio.to_thread(signature, self.sessions, now)
        if seen is None:
            self._seen = None
            return None
        unchanged = seen == self._seen
        recent = self._served_at is not None and now - self._served_at < EVERY
        if unchanged and recent:
            return None
        if not await asyncio.to_thread(
            take_lead, self.sessions, LEASE, self.worker, self.lease, now
        ):
            return None
        done = await asyncio.to_thread(
            request_queue.serve, self.sessions, self.live, self.policy, now
        )
        # What was read before the round: a release committed while the round ran is news
        # next time (the round may have tried its request just before). The round's own
        # moves are news too, so a productive round is followed by one more; tries that
        # fulfil nothing do not move updated_at (api/db/request_claim.enter_queue).
        self._seen = seen
        self._served_at = now
        if done.fulfilled or done.preempting or done.preempted or done.expired:
            log.info(
                "queue: %d fulfilled, %d preempting, %d preempted, %d expired, %d waiting",
                len(done.fulfilled),
                len(done.preempting),
                len(done.preempted),
                done.expired,
                done.waiting,
            )
        return done


def queue_policy(settings: Settings) -> request_queue.QueuePolicy:
    return request_queue.QueuePolicy(
        grace=timedelta(seconds=settings.preemption_grace_seconds),
        backfill_window=timedelta(seconds=settings.queue_backfill_seconds),
        approval_ttl=timedelta(hours=settings.request_approval_hours),
    )


def signature(sessions: sessionmaker[Session], now: datetime) -> Signature | None:
    """What a round depends on, read cheaply; None when nothing is open or preempting."""
    with sessions() as session:
        requests = session.execute(
            select(
                func.count(),
                func.max(ProvisionRequestRow.updated_at),
                func.count().filter(ProvisionRequestRow.starts_at <= now),
            ).where(ProvisionRequestRow.state.in_(OPEN))
        ).one()
        preempting = session.execute(
            select(func.count(), func.count().filter(AllocationRow.preempt_at <= now)).where(
                AllocationRow.preempt_at.is_not(None), AllocationRow.released_at.is_(None)
            )
        ).one()
        if not requests[0] and not preempting[0]:
            return None
        feed = session.scalar(select(func.max(DeviceChangeRow.seq)))
    return (*requests, *preempting, feed)
