"""The per-request context: the caller, one database session, and the DataLoaders.

Everything here lives for one request only (loaders are never module globals, so no
request can see another's cached rows or another tenant's data).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from strawberry.dataloader import DataLoader

from api.db import allocation_query
from api.db import device as device_db
from api.db import infiniband as infiniband_db
from api.db.candidates import LiveIndex
from api.db.models import InfinibandRow
from api.db.session import begin_writing, lost_races_as_domain_errors
from api.db.tenant import Directory
from api.db.unavailable import database_unavailable, first_line
from api.domain.access import Principal, require_principal
from api.domain.document import Gpu
from api.settings import Settings

log = logging.getLogger("gpuinv.graphql")


@dataclass
class Context:
    request: Request | None
    settings: Settings
    engine: Engine  # for functions that own their transactions (matchDevice)
    sessions: sessionmaker[Session]
    principal: Principal | None
    auth_problem: str | None
    request_id: str
    live_index: LiveIndex = field(default_factory=LiveIndex)
    _session: Session | None = None
    _directory: Directory | None = None
    _loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)
    _memos: dict[str, Any] = field(default_factory=dict)
    # Whether this request began a commit, on any connection (see watch_commits): until
    # it has, an operation that met a dead connection has written nothing, and may run
    # again on a fresh one (see the view).
    committing: bool = False

    @property
    def session(self) -> Session:
        if self._session is None:
            self._session = self.sessions()
        return self._session

    def start_over(self) -> None:
        """Forget this request's database work (its session, directory and loaders), so
        that its operation can run again from the start."""
        self.close()
        self._directory = None
        self._loaders.clear()
        self._memos.clear()

    def who(self) -> Principal:
        return require_principal(self.principal, self.auth_problem)

    @property
    def directory(self) -> Directory:
        if self._directory is None:
            self._directory = Directory.load(self.session)
        return self._directory

    @contextmanager
    def write(self) -> Iterator[Session]:
        """The unit of work of one mutation: commit on success, roll back on any error."""
        session = self.session
        try:
            with lost_races_as_domain_errors():
                try:
                    begin_writing(session)
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            self._directory = None  # tenants or projects may have changed
            self._loaders.clear()

    def close(self) -> None:
        """Give the session's connection back. Never raises: by now the answer is decided
        (a mutation has committed or rolled back) and the client must get it; a connection
        that died meanwhile is the pool's to replace."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.close()
        except Exception as exc:
            if database_unavailable(exc):
                log.warning("closing the request's session: %s", first_line(exc))
            else:
                log.exception("closing the request's session failed")

    def memo[T](self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, once per request: a value every item of a list shares (the
        queue's order, for each request's place in it)."""
        if name not in self._memos:
            self._memos[name] = compute()
        value: T = self._memos[name]
        return value

    def loader(self, name: str) -> DataLoader[Any, Any]:
        if name not in self._loaders:
            self._loaders[name] = DataLoader(load_fn=getattr(self, f"_load_{name}"))
        return self._loaders[name]

    def run_here(self) -> None:
        """Make this the running request of the current task: its operation's commits,
        whichever connection makes them, then mark it (the worker threads that run the
        operation are given a copy of the task's context variables)."""
        _running.set(self)

    async def _load_gpus(self, device_ids: Sequence[str]) -> list[tuple[Gpu, ...]]:
        found = device_db.load_gpus(self.session, list(device_ids))
        return [found[i] for i in device_ids]

    async def _load_allocation_devices(self, ids: Sequence[str]) -> list[Any]:
        found = allocation_query.devices_of(self.session, list(ids))
        return [found.get(i, []) for i in ids]

    async def _load_ports(self, device_ids: Sequence[str]) -> list[list[InfinibandRow]]:
        found = infiniband_db.ports_by_device(self.session, list(device_ids))
        return [found.get(i, []) for i in device_ids]


_running: ContextVar[Context | None] = ContextVar("gpuinv_running_request", default=None)


def watch_commits(engine: Engine) -> None:
    """Mark the running request (Context.run_here) as committing whenever a connection of
    ``engine`` commits: a session's, or one a function that owns its transactions took
    from the pool. The event comes before the COMMIT is sent."""
    event.listen(engine, "commit", _commit_begins)


def _commit_begins(_connection: Connection) -> None:
    context = _running.get()
    if context is not None:
        context.committing = True
