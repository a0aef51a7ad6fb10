"""Feeding the matching engine: device rows become Candidates in a per-process index.

The index is loaded once, then kept current from the ``device_change`` feed that database
triggers write on every change by anyone. A poll is one indexed query that usually
returns nothing. Sequence numbers are handed out before commit, so a transaction with a
lower number may commit after we have read past it: such holes are remembered and asked
for again until they fill or (a rolled-back transaction) expire.

Most changes are claims and releases, which touch only a device's status and free amounts.
The poll reads the changed device rows along with the feed (one statement), and a device
whose other columns are as the index last saw them is updated in place; only a real change
of the device (its row, GPUs or ports) costs a re-read and a re-render.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    any_,
    bindparam,
    delete,
    func,
    literal_column,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from api.db import device as device_db
from api.db.base import utcnow
from api.db.models import DeviceChangeRow, DeviceRow
from api.db.quota import LimitsCache
from api.db.session import rowcount, session_on
from api.db.tenant import Directory
from api.domain.matching.index import Candidate, CandidateIndex, Capacity
from api.domain.vocabulary import Kind, Status

HOLE_LIFETIME = 120.0  # seconds a missing sequence number is waited for
# The feed keeps a day (see prune_changes); a process that has not polled for an hour
# reloads in full rather than trust a feed that may have been pruned under it.
FEED_RETENTION = timedelta(days=1)
RELOAD_AFTER_IDLE = 3600.0
MAX_HOLES = 10_000
_CHUNK = 5000
# A poll reads the changed device rows along with the feed up to this many changes; more
# is a bulk change (an import), read as the feed alone and then re-read by device.
_JOINED_POLL = 1000

# The device columns a claim or a release may change; any other column changing means the
# device's document changed. Listed by what may change, so a column added later counts as
# a document change until said otherwise.
_CAPACITY_COLUMNS = frozenset(
    {
        "status",
        "free_cpu",
        "free_memory_mb",
        "free_storage_gb",
        "free_gpus",
        "generation",
        "updated_at",
    }
)
_FACT_COLUMNS = tuple(c for c in DeviceRow.__table__.c if c.name not in _CAPACITY_COLUMNS)
_FACT_ATTRIBUTES = tuple(DeviceRow.__mapper__.get_property_by_column(c).key for c in _FACT_COLUMNS)
Facts = tuple[Any, ...]


def facts_of(device: DeviceRow) -> Facts:
    """The device row's columns other than status and free amounts."""
    return tuple(getattr(device, name) for name in _FACT_ATTRIBUTES)


def candidates(
    session: Session, devices: Sequence[DeviceRow], directory: Directory | None = None
) -> list[Candidate]:
    out = []
    for d, document in zip(devices, device_db.documents(session, devices, directory), strict=True):
        out.append(
            Candidate(
                id=d.id,
                kind=Kind(d.kind),
                hostname=d.hostname,
                status=Status(d.status),
                document=document,
                total=Capacity(d.total_cpu, d.total_memory_mb, d.total_storage_gb, d.total_gpus),
                free=Capacity(d.free_cpu, d.free_memory_mb, d.free_storage_gb, d.free_gpus),
                site=d.site,
                fabrics=frozenset(p["fabric"] for p in document["infiniband"] if p["fabric"]),
                shareable=str((d.tags or {}).get("shareable", "")).strip().lower() != "false",
                generation=d.generation,
                healthy=not d.health,
            )
        )
    return out


def load_index(session: Session, facts: dict[str, Facts] | None = None) -> CandidateIndex:
    """Every device and VM, freshly read (the CLI's way; the service keeps one live).
    ``facts``, if given, is filled with each device's facts_of."""
    index = CandidateIndex()
    directory = Directory.load(session)
    ids = list(session.scalars(select(DeviceRow.id).order_by(DeviceRow.id)))
    for start in range(0, len(ids), _CHUNK):
        rows = list(
            session.scalars(select(DeviceRow).where(DeviceRow.id.in_(ids[start : start + _CHUNK])))
        )
        for candidate in candidates(session, rows, directory):
            index.upsert(candidate)
        if facts is not None:
            facts.update((d.id, facts_of(d)) for d in rows)
    return index


class LiveIndex:
    """One CandidateIndex per process, brought up to date before every match."""

    def __init__(self) -> None:
        self._index: CandidateIndex | None = None
        self._facts: dict[str, Facts] = {}  # per device, as the index last saw them
        self._high = 0
        self._holes: dict[int, float] = {}
        self._lock = threading.Lock()
        self._polled_at = 0.0
        # Devices a request of this process has chosen and is claiming now: requests run in
        # worker threads, and two that read the same index would pick the same smallest
        # fit, one then losing the race in the database and matching again.
        self._being_claimed: Counter[str] = Counter()
        # The quota limits this process's claims are under, read at most once a second.
        self.quota_limits = LimitsCache()

    def current(self, connection: Connection) -> CandidateIndex:
        """The index, up to date (``connection``: a session's is ``session.connection()``)."""
        with self._lock:
            return self._bring_up_to_date(connection)

    @contextmanager
    def reading(self, connection: Connection) -> Iterator[CandidateIndex]:
        """The index, up to date, held for the caller's match: requests run in worker
        threads, and another's catch-up must not change the arrays under a match. (A
        match takes ~0.1 ms; the database, not the index, decides each claim.)"""
        with self._lock:
            yield self._bring_up_to_date(connection)

    def being_claimed(self) -> frozenset[str]:
        """The devices other requests of this process are claiming (call while reading)."""
        return frozenset(self._being_claimed)

    def claim_started(self, device_ids: Collection[str]) -> None:
        """Call while reading, before letting the index go: the devices this request
        chose, for the others to leave alone until ``claim_ended``."""
        self._being_claimed.update(device_ids)

    def claim_ended(self, device_ids: Collection[str]) -> None:
        """The claim is committed (the feed now shows it) or given up."""
        with self._lock:
            self._being_claimed.subtract(device_ids)
            self._being_claimed = +self._being_claimed  # drop the zeros

    def _bring_up_to_date(self, connection: Connection) -> CandidateIndex:
        idle = time.monotonic() - self._polled_at > RELOAD_AFTER_IDLE
        try:
            if self._index is None or idle:
                self._load(connection)
            else:
                self._catch_up(connection)
        except BaseException:
            # A catch-up cut short (a lost connection, a cancelled request) has moved
            # past changes it never applied: start from a full load next time.
            self._index = None
            raise
        self._polled_at = time.monotonic()
        assert self._index is not None  # loaded or caught up above
        return self._index

    def reset(self) -> None:
        """Forget everything; the next match loads afresh (after a restore, or a wiped
        database in tests)."""
        with self._lock:
            self._index, self._high, self._holes, self._facts = None, 0, {}, {}

    def _load(self, connection: Connection) -> None:
        # Read the feed's head first: whatever changes while we load is replayed.
        self._high = connection.scalar(select(func.max(DeviceChangeRow.seq))) or 0
        self._holes, self._facts = {}, {}
        with session_on(connection) as session:
            self._index = load_index(session, self._facts)

    def _catch_up(self, connection: Connection) -> None:
        assert self._index is not None
        now = time.monotonic()
        self._holes = {s: t for s, t in self._holes.items() if now - t < HOLE_LIFETIME}
        params: dict[str, Any] = {"high": self._high}
        joined, alone = _POLL, _FEED
        if self._holes:
            postgres = connection.dialect.name == "postgresql"
            joined, alone = _POLLS_WITH_HOLES[postgres]
            params["holes"] = list(self._holes) if postgres else json.dumps(list(self._holes))
        rows = connection.execute(joined, params).all()
        if not rows:
            return
        bulk = len(rows) > _JOINED_POLL
        if bulk:  # an import or a sync: read the feed alone, then re-read what changed
            rows = connection.execute(alone, params).all()
        for row in rows:
            self._holes.pop(row.seq, None)
            if row.seq > self._high:
                self._holes.update({missing: now for missing in range(self._high + 1, row.seq)})
                self._high = row.seq
        if len(self._holes) > MAX_HOLES:  # something odd: start over from a full load
            self._load(connection)
            return
        if bulk:
            changed = {row.device_id for row in rows}
            if len(changed) > len(self._index) // 4:
                self._load(connection)  # most of the fleet: one full read is simpler
            else:
                self._reload(connection, changed)
            return
        latest = {row.device_id: row for row in rows}  # the row as it is now, once
        redo = {row.device_id for row in rows if row.origin != "device"}
        for device_id, row in latest.items():
            if device_id not in redo and not self._apply_capacity(device_id, row):
                redo.add(device_id)
        if redo:
            self._reload(connection, redo)

    def _apply_capacity(self, device_id: str, row: Any) -> bool:
        """Update a device in place if only its status and free amounts changed."""
        assert self._index is not None
        known = self._index.items.get(device_id)
        if known is None or row.id is None:  # new, or deleted
            return False
        if tuple(row[len(_FEED_COLUMNS) + i] for i in _FACT_POSITIONS) != self._facts.get(
            device_id
        ):
            return False
        document = known.document
        if row.status != known.status:
            document = dict(document, status=row.status)
        self._index.upsert(
            replace(
                known,
                status=Status(row.status),
                document=document,
                free=Capacity(row.free_cpu, row.free_memory_mb, row.free_storage_gb, row.free_gpus),
                generation=row.generation,
            )
        )
        return True

    def _reload(self, connection: Connection, device_ids: set[str]) -> None:
        assert self._index is not None
        wanted = sorted(device_ids)
        seen: set[str] = set()
        with session_on(connection) as session:
            directory = Directory.load(session)
            for start in range(0, len(wanted), 900):
                chunk = wanted[start : start + 900]
                found = list(session.scalars(select(DeviceRow).where(DeviceRow.id.in_(chunk))))
                for candidate in candidates(session, found, directory):
                    self._index.upsert(candidate)
                self._facts.update((d.id, facts_of(d)) for d in found)
                seen.update(d.id for d in found)
        for gone in device_ids - seen:
            self._index.remove(gone)
            self._facts.pop(gone, None)


_FEED_COLUMNS = ("seq", "device_id", "origin")
_ROW_COLUMNS = tuple(DeviceRow.__table__.c)
_FACT_POSITIONS = tuple(i for i, c in enumerate(_ROW_COLUMNS) if c.name not in _CAPACITY_COLUMNS)

# The polls, built once (every matchDevice polls): changes after the last one seen
# (:high), and those missing below it (:holes) when there are any. The holes are one
# parameter, an array on PostgreSQL and a JSON array on SQLite, not an IN list of one
# parameter each: a burst of rolled-back writes leaves thousands of holes for
# HOLE_LIFETIME, and as an IN list every poll spent ~100 ms rendering 8,000 of them (and
# PostgreSQL planned a new statement text whenever their number changed). The two parts
# are a UNION ALL, each read through the primary key: as "seq > :high OR seq = ANY(:holes)"
# PostgreSQL's plan for the prepared statement compared every row of the feed with every
# hole (100 ms a poll for 8,000 holes over 1,500 changes; 23 ms as two index reads).
_change = DeviceChangeRow.__table__.c
_feed = (_change.seq, _change.device_id, _change.origin)
_new = _change.seq > bindparam("high")
_missing = {
    True: _change.seq == any_(bindparam("holes", type_=ARRAY(BigInteger))),
    False: _change.seq.in_(
        select(literal_column("value")).select_from(func.json_each(bindparam("holes")))
    ),
}
_joined = select(*_feed, *_ROW_COLUMNS).select_from(
    DeviceChangeRow.__table__.outerjoin(
        DeviceRow.__table__, DeviceRow.__table__.c.id == _change.device_id
    )
)
_POLL = _joined.where(_new).order_by(_change.seq).limit(_JOINED_POLL + 1)
_FEED = select(*_feed).where(_new).order_by(_change.seq)


def _new_or_missing(part: Select[Any], missing: ColumnElement[bool]) -> Select[Any]:
    both = union_all(part.where(_new), part.where(missing)).subquery()
    return select(both).order_by(both.c.seq)


_POLLS_WITH_HOLES = {  # by "is it PostgreSQL": (joined, feed alone)
    postgres: (
        _new_or_missing(_joined, missing).limit(_JOINED_POLL + 1),
        _new_or_missing(select(*_feed), missing),
    )
    for postgres, missing in _missing.items()
}


def prune_changes(session: Session) -> int:
    """Drop feed entries older than FEED_RETENTION; the caller commits."""
    cutoff = utcnow() - FEED_RETENTION
    return rowcount(
        session.execute(delete(DeviceChangeRow).where(DeviceChangeRow.changed_at < cutoff))
    )
