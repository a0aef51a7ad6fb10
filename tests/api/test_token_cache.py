"""Each process trusts a token it has read for GPUINV_TOKEN_CACHE_SECONDS, so a request
costs no token query: the bound is what a revocation made elsewhere (the CLI, another
replica) waits for, on every replica. Real servers (two replicas on one database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db import token as token_db
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from api.settings import Settings
from tests.support.api import Api
from tests.support.server import ServerThread

DEVICES = "{ devices { totalCount } }"


@pytest.fixture
def replicas(database_url: str, db: sessionmaker[Session]) -> Iterator[list[ServerThread]]:
    """Two replicas trusting tokens for 1 s, and one trusting them for a minute."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                ServerThread(
                    Settings(
                        database_url=database_url,
                        lease_sweep_seconds=3600,
                        token_cache_seconds=seconds,
                    )
                )
            )
            for seconds in (1.0, 1.0, 60.0)
        ]


def _viewer(db: sessionmaker[Session], expires: timedelta | None = None) -> tuple[str, str]:
    with unit_of_work(db) as session:
        token, secret = token_db.create_token(
            session, cli_principal(), "viewer", None, "pipeline", expires
        )
    return token.id, secret


def test_a_revocation_elsewhere_reaches_every_replica_within_the_bound(
    replicas: list[ServerThread], db: sessionmaker[Session]
) -> None:
    token_id, secret = _viewer(db)
    quick, other, slow = (Api(r.url, secret) for r in replicas)
    for api in (quick, other, slow):
        api.ok(DEVICES)  # each replica has read and cached the token
    with unit_of_work(db) as session:  # as `gpuinv token revoke` does, out of band
        token_db.revoke_token(session, cli_principal(), token_id)
    revoked_at = time.monotonic()
    slow.ok(DEVICES)  # a minute's cache: still trusted, so the cache is real
    for api in (quick, other):
        error = api.refused_once_cache_ends(DEVICES)
        assert error["message"] == "bearer token revoked"
    assert time.monotonic() - revoked_at < 2.0  # 1 s of cache, and the requests


def test_a_cached_token_is_refused_the_moment_it_expires(
    replicas: list[ServerThread], db: sessionmaker[Session]
) -> None:
    _, secret = _viewer(db, timedelta(seconds=1))
    slow = Api(replicas[2].url, secret)
    slow.ok(DEVICES)  # cached for a minute, with its expiry one second away
    time.sleep(1.2)
    assert slow.error(DEVICES)["message"] == "bearer token expired"


def test_a_token_created_a_moment_ago_works_at_once(
    replicas: list[ServerThread], db: sessionmaker[Session]
) -> None:
    slow = Api(replicas[2].url, "gpuinv_not-yet")
    assert slow.error(DEVICES)["message"] == "unknown bearer token"  # refusals: not cached
    _, secret = _viewer(db)
    Api(replicas[2].url, secret).ok(DEVICES)
