"""A release and a claim of the same tenant on the same server take their row locks in
one order: the devices, then the quota counters. PostgreSQL only (SQLite has one writer).

A claim's statement locks the device it claims, then its tenant's counters. The release
once gave the counters back first and the devices after: a release held the counters and
waited for the device while a claim held the device and waited for the counters, and
PostgreSQL aborted one of them (found by tests/integration/test_quota_concurrency.py). The
schedule here is forced: the release pauses after giving the counters back (a pause
injected into ``give_back``, said so: no real schedule makes the interleaving reliable),
while a claim of a slice of the same server runs."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.db import allocation as allocation_db
from api.db import quota as quota_db
from api.db import release as release_db
from api.db.candidates import LiveIndex
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from tests.support.api import make_tenant
from tests.support.fleet import h100_servers

pytestmark = pytest.mark.postgres_only
LABELS = {
    "paas.envmgmt.io/inventory": "vcluster",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}]
    ),
}


def _claim(engine: Engine, environment: str) -> Any:
    given = allocation_db.MatchInput(environment, {"gpu": 1}, labels=LABELS, tenant="acme")
    return allocation_db.match_device(engine, cli_principal(), LiveIndex(), given)


def test_a_release_and_a_claim_on_one_server_never_deadlock(
    engine: Engine, db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tenant(db, "acme")
    h100_servers(db, 1)  # one server of 8 GPUs: every slice is on it
    assert _claim(engine, "first").allocation is not None
    real_give_back, claimed = quota_db.give_back, {}

    def give_back_then_wait(session: Session, allocation: Any) -> None:
        real_give_back(session, allocation)
        # The release holds whatever it has locked so far; a claim runs meanwhile.
        worker = threading.Thread(target=lambda: claimed.update(second=_try(engine)))
        worker.start()
        time.sleep(1.0)
        claimed["worker"] = worker

    monkeypatch.setattr(quota_db, "give_back", give_back_then_wait)
    with unit_of_work(db) as session:
        assert release_db.release(session, cli_principal(), "first", tenant="acme") is not None
    claimed["worker"].join(30)
    second = claimed["second"]
    assert not isinstance(second, Exception), repr(second)
    assert second.allocation is not None
    # A deadlock would have aborted the claim's first attempt (a claim chosen to give way
    # retries, api/db/claim.py), so it got through on its first.
    assert second.attempts == 1


def _try(engine: Engine) -> Any:
    try:
        return _claim(engine, "second")
    except Exception as exc:  # the deadlock, when it happens, is what this test is for
        return exc


def test_a_release_that_another_beat_answers_the_allocation_as_released(
    engine: Engine, db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """releaseAllocation read the allocation as active, then a lease's end (or another
    replica) released it first: the answer is the allocation as released, not as first
    read (found by the random stream of tests/integration/test_quota_concurrency.py). The
    other release is run between the read and the write by a wrapper around the read
    (fault injection, said so: no real schedule makes it reliable)."""
    make_tenant(db, "acme")
    h100_servers(db, 1)
    assert _claim(engine, "leased").allocation is not None
    real_lookup = release_db.active_allocation

    def read_then_beaten(session: Session, scope: str, environment: str) -> Any:
        found = real_lookup(session, scope, environment)
        monkeypatch.setattr(release_db, "active_allocation", real_lookup)
        with unit_of_work(db) as other:  # the lease's end, committed first
            release_db.release(other, cli_principal(), environment, tenant="acme")
        return found

    monkeypatch.setattr(release_db, "active_allocation", read_then_beaten)
    with unit_of_work(db) as session:
        answer = release_db.release(session, cli_principal(), "leased", tenant="acme")
        assert answer is not None and answer.released_at is not None
