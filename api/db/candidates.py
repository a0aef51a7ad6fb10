"""Feeding the matching engine: device rows become Candidates in a per-process index.

The index is loaded once, then kept current from the ``device_change`` feed that database
triggers write on every change by anyone. A poll is one indexed query that usually
returns nothing. Sequence numbers are handed out before commit, so a transaction with a
lower number may commit after we have read past it: such holes are remembered and asked
for again until they fill or (a rolled-back transaction) expire.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from api.db import device as device_db
from api.db import infiniband as infiniband_db
from api.db.base import utcnow
from api.db.models import Device, DeviceChange
from api.db.tenant import Directory
from api.domain.matching.index import Candidate, CandidateIndex, Capacity

HOLE_LIFETIME = 120.0  # seconds a missing sequence number is waited for
# The feed keeps a day (see prune_changes); a process that has not polled for an hour
# reloads in full rather than trust a feed that may have been pruned under it.
FEED_RETENTION = timedelta(days=1)
RELOAD_AFTER_IDLE = 3600.0
MAX_HOLES = 10_000
_CHUNK = 5000


def candidates(
    session: Session, devices: Sequence[Device], directory: Directory | None = None
) -> list[Candidate]:
    directory = directory or Directory.load(session)
    gpus = device_db.load_gpus(session, [d.id for d in devices])
    ports = infiniband_db.ports_by_device(session, [d.id for d in devices])
    out = []
    for d in devices:
        own_ports = ports.get(d.id, [])
        document = device_db.render(
            d, gpus[d.id], [infiniband_db.port_entry(p) for p in own_ports], directory
        )
        out.append(
            Candidate(
                id=d.id,
                kind=d.kind,
                hostname=d.hostname,
                status=d.status,
                document=document,
                total=Capacity(d.total_cpu, d.total_memory_mb, d.total_storage_gb, d.total_gpus),
                free=Capacity(d.free_cpu, d.free_memory_mb, d.free_storage_gb, d.free_gpus),
                site=d.site,
                fabrics=frozenset(p.fabric for p in own_ports if p.fabric),
                shareable=str((d.tags or {}).get("shareable", "")).strip().lower() != "false",
                generation=d.generation,
            )
        )
    return out


def load_index(session: Session) -> CandidateIndex:
    """Every device and VM, freshly read (the CLI's way; the service keeps one live)."""
    index = CandidateIndex()
    directory = Directory.load(session)
    ids = list(session.scalars(select(Device.id).order_by(Device.id)))
    for start in range(0, len(ids), _CHUNK):
        rows = session.scalars(select(Device).where(Device.id.in_(ids[start : start + _CHUNK])))
        for candidate in candidates(session, list(rows), directory):
            index.upsert(candidate)
    return index


class LiveIndex:
    """One CandidateIndex per process, brought up to date before every match."""

    def __init__(self) -> None:
        self._index: CandidateIndex | None = None
        self._high = 0
        self._holes: dict[int, float] = {}
        self._lock = threading.Lock()
        self._polled_at = 0.0

    def current(self, session: Session) -> CandidateIndex:
        with self._lock:
            idle = time.monotonic() - self._polled_at > RELOAD_AFTER_IDLE
            if self._index is None or idle:
                # Read the feed's head first: whatever changes while we load is replayed.
                self._high = session.scalar(select(func.max(DeviceChange.seq))) or 0
                self._holes = {}
                self._index = load_index(session)
            else:
                self._catch_up(session)
            self._polled_at = time.monotonic()
            return self._index

    def reset(self) -> None:
        """Forget everything; the next match loads afresh (after a restore, or a wiped
        database in tests)."""
        with self._lock:
            self._index, self._high, self._holes = None, 0, {}

    def refresh(self, session: Session, device_ids: Sequence[str]) -> None:
        """Re-read some devices now (e.g. after losing a claim race on them)."""
        with self._lock:
            if self._index is not None:
                self._reload(session, self._index, set(device_ids))

    def _catch_up(self, session: Session) -> None:
        assert self._index is not None
        now = time.monotonic()
        self._holes = {s: t for s, t in self._holes.items() if now - t < HOLE_LIFETIME}
        condition = DeviceChange.seq > self._high
        if self._holes:
            condition = or_(condition, DeviceChange.seq.in_(list(self._holes)))
        rows = session.execute(
            select(DeviceChange.seq, DeviceChange.device_id)
            .where(condition)
            .order_by(DeviceChange.seq)
        ).all()
        if not rows:
            return
        for seq, _ in rows:
            self._holes.pop(seq, None)
            if seq > self._high:
                self._holes.update({missing: now for missing in range(self._high + 1, seq)})
                self._high = seq
        if len(self._holes) > MAX_HOLES:  # something odd: start over from a full load
            self._index, self._holes = None, {}
            self._high = session.scalar(select(func.max(DeviceChange.seq))) or 0
            self._index = load_index(session)
            return
        self._reload(session, self._index, {device_id for _, device_id in rows})

    @staticmethod
    def _reload(session: Session, index: CandidateIndex, device_ids: set[str]) -> None:
        wanted = sorted(device_ids)
        directory = Directory.load(session)
        seen: set[str] = set()
        for start in range(0, len(wanted), 900):
            chunk = wanted[start : start + 900]
            found = list(session.scalars(select(Device).where(Device.id.in_(chunk))))
            for candidate in candidates(session, found, directory):
                index.upsert(candidate)
            seen.update(d.id for d in found)
        for gone in device_ids - seen:
            index.remove(gone)


def prune_changes(session: Session) -> int:
    """Drop feed entries older than FEED_RETENTION; the caller commits."""
    cutoff = utcnow() - FEED_RETENTION
    return session.execute(delete(DeviceChange).where(DeviceChange.changed_at < cutoff)).rowcount
