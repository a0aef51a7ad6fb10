"""A claim costs what the database must do, and no more: the statements one matchDevice
sends, counted on both backends. Each statement is a round trip and CPU on both sides;
the claim path once sent thirteen (a token lookup, a look for the environment's
allocation before matching, three BEGINs and two ROLLBACKs among them). On PostgreSQL
the claim and its records are now one statement in autocommit; on SQLite, whose
statements cost no round trip, four in one transaction."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import allocation as allocation_db
from api.db.candidates import LiveIndex
from api.db.models import AllocationRow, DeviceRow
from api.db.profile import save_profile
from api.db.session import unit_of_work
from api.domain.access import cli_principal
from tests.support.fleet import h100_servers
from tests.support.statements import Sent, statements_sent

LABELS = {
    "paas.envmgmt.io/inventory": "vcluster",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
            {"type": "capacity", "keyInVariable": "nodes", "keyInCapacity": "requiredNoofNodes"},
        ]
    ),
}


WHOLE_LABELS = dict(LABELS, **{"paas.envmgmt.io/inventory": "baremetal"})


def _fleet(db: sessionmaker[Session]) -> None:
    h100_servers(db, 3)
    with unit_of_work(db) as session:
        save_profile(session, cli_principal(), "slice", LABELS)


def _openings(sent: list[Sent]) -> list[str]:
    return [s.opening for s in sent]


def _match(
    engine: Engine, live: LiveIndex, environment: str, nodes: int = 1, **how: object
) -> None:
    variables = {"gpu": 1, "nodes": nodes}
    given = allocation_db.MatchInput(environment, variables, **how)  # type: ignore[arg-type]
    allocation_db.match_device(engine, cli_principal(), live, given)


# The statements of a claim after the index has caught up (its first statement).
SQLITE_CLAIM = [
    "UPDATE device",  # the claim, conditional
    "INSERT INTO allocation",
    "INSERT INTO allocation_device",
    "INSERT INTO audit_event",
    "INSERT INTO event",  # the outbox: a row only if a webhook may want it
]
POSTGRES_CLAIM = ["WITH claimed"]  # the same, as data-modifying CTEs of one statement


def test_a_claim_is_one_transaction_of_the_statements_it_needs(
    db: sessionmaker[Session], engine: Engine
) -> None:
    _fleet(db)
    live = LiveIndex()
    _match(engine, live, "warm", labels=LABELS)  # loads the index
    sqlite = engine.dialect.name == "sqlite"
    poll = "SELECT device_change.seq,"  # the index catches up with the feed
    with statements_sent(engine) as sent:
        _match(engine, live, "inline", labels=LABELS)
    if sqlite:
        # The attempt is a writer's from its start (IMMEDIATE): nobody commits between
        # the catch-up and the claim.
        assert _openings(sent) == ["BEGIN IMMEDIATE", poll, *SQLITE_CLAIM]
    else:
        assert _openings(sent) == [poll, *POSTGRES_CLAIM]  # no BEGIN, no COMMIT
    with statements_sent(engine) as sent:
        _match(engine, live, "saved", profile="slice")
    profile = "SELECT CAST(profile.labels"  # a saved profile is read first (as text)
    if sqlite:
        assert _openings(sent) == ["BEGIN IMMEDIATE", profile, poll, *SQLITE_CLAIM]
    else:
        assert _openings(sent) == [profile, poll, *POSTGRES_CLAIM]


def test_a_claim_of_several_devices_is_a_transaction(
    db: sessionmaker[Session], engine: Engine
) -> None:
    """Some of several devices may be claimed and others not: that is rolled back."""
    _fleet(db)
    live = LiveIndex()
    _match(engine, live, "warm", labels=LABELS)
    with statements_sent(engine) as sent:
        _match(engine, live, "two", nodes=2, labels=LABELS)
    poll = "SELECT device_change.seq,"
    if engine.dialect.name == "sqlite":
        assert _openings(sent) == ["BEGIN IMMEDIATE", poll, *SQLITE_CLAIM]
    else:
        assert _openings(sent) == [poll, "BEGIN", *POSTGRES_CLAIM]


def test_a_dry_run_reads_and_writes_nothing(db: sessionmaker[Session], engine: Engine) -> None:
    _fleet(db)
    live = LiveIndex()
    _match(engine, live, "warm", labels=LABELS)
    with statements_sent(engine) as sent:
        _match(engine, live, "dry", labels=LABELS, dry_run=True)
    begin = ["BEGIN"] if engine.dialect.name == "sqlite" else []
    assert _openings(sent) == [*begin, "SELECT device_change.seq,"]


def test_a_claim_of_several_devices_that_loses_one_takes_none(
    db: sessionmaker[Session], engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two devices chosen, one of them taken meanwhile: the claim of the other is undone,
    and the next attempt takes two free ones. The race is made by hand (a fault we cannot
    time otherwise): the index's first catch-up is skipped, so it still believes gpu-0 free
    after another writer took it."""
    ids = h100_servers(db, 3)
    live = LiveIndex()
    _match(engine, live, "warm", labels=LABELS, dry_run=True)  # loads the index
    with unit_of_work(db) as session:
        session.execute(
            update(DeviceRow)
            .where(DeviceRow.id == ids[0])
            .values(status="allocated", free_gpus=0, free_cpu=0)
            .execution_options(synchronize_session=False)
        )
    catch_up = LiveIndex._catch_up
    skipped: list[bool] = []

    def stale_once(self: LiveIndex, connection: object) -> None:
        if not skipped:
            skipped.append(True)
            return
        catch_up(self, connection)  # type: ignore[arg-type]

    monkeypatch.setattr(LiveIndex, "_catch_up", stale_once)
    given = allocation_db.MatchInput("two", {"gpu": 8, "nodes": 2}, labels=WHOLE_LABELS)
    result = allocation_db.match_device(engine, cli_principal(), live, given)
    assert result.attempts == 2
    assert sorted(d.device_id for d in result.devices or []) == sorted(ids[1:])
    with db() as session:
        free = dict(session.execute(select(DeviceRow.hostname, DeviceRow.free_gpus)).all())
        allocations = session.scalar(select(func.count()).select_from(AllocationRow))
    assert free == {"gpu-0": 0, "gpu-1": 0, "gpu-2": 0}
    assert allocations == 1  # the lost attempt wrote nothing


def test_a_profile_saved_again_counts_from_the_next_claim(
    db: sessionmaker[Session], engine: Engine
) -> None:
    """Parsed profiles are cached by their text (api/db/profile.py); the text is read on
    every claim, so a profile saved again, here from slices to whole nodes, is what the
    very next claim uses."""
    _fleet(db)
    live = LiveIndex()
    who = cli_principal()
    given = allocation_db.MatchInput("first", {"gpu": 1, "nodes": 1}, profile="slice")
    first = allocation_db.match_device(engine, who, live, given)
    with unit_of_work(db) as session:
        save_profile(session, who, "slice", WHOLE_LABELS)
    given = allocation_db.MatchInput("second", {"gpu": 8, "nodes": 1}, profile="slice")
    second = allocation_db.match_device(engine, who, live, given)
    assert first.allocation is not None and second.allocation is not None
    assert first.allocation.inventory_type == "vcluster"
    assert second.allocation.inventory_type == "baremetal"


def test_json_columns_keep_integers_beyond_64_bits(
    db: sessionmaker[Session], engine: Engine
) -> None:
    """JSON columns are written by orjson, which refuses integers beyond 64 bits; a
    client's variables may hold one, and it must come back exact, not as a float."""
    _fleet(db)
    huge = 10**30 + 1
    given = allocation_db.MatchInput(
        "huge", {"gpu": 1, "nodes": 1, "ticket": huge, "small": 7}, labels=LABELS
    )
    allocation_db.match_device(engine, cli_principal(), LiveIndex(), given)
    with db() as session:
        stored = session.scalar(
            select(AllocationRow.variables).where(AllocationRow.environment == "huge")
        )
    assert stored == {"gpu": 1, "nodes": 1, "ticket": huge, "small": 7}
    assert isinstance(stored["ticket"], int)
