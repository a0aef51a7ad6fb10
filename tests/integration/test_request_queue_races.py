"""Provision requests under races (issue 17, "Proof"; DESIGN.md "Priority, preemption,
provision requests"): two replicas serving the queue at once, and the queue's leader lease;
an owner's release at the very preemption deadline; a cancel during the grace, and at the
deadline's take-over; two admins deciding one request at once. Both backends.

Real parts: the shared test server (the API), the database, and the queue's own code
(``request_queue.serve``, ``QueueWorker``). A replica's queue is its code on an engine
and a LiveIndex of its own, run in a thread of this process rather than a process of its
own, so a round runs exactly when the test releases it (the test server runs no rounds).
After every race the books are checked from the tables (``books``): a fulfilled request
holds exactly one active allocation, no allocation serves two requests, no device holds
more than it has, the quota counters equal what active allocations hold, and nothing was
released twice.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import preemption, release, request_claim, request_queue
from api.db.base import utcnow
from api.db.candidates import LiveIndex
from api.db.leader_lease import give_up_lead
from api.db.models import (
    AllocationDeviceRow,
    AllocationRow,
    AuditEventRow,
    DeviceRow,
    EventRow,
    ProvisionRequestRow,
    QuotaRow,
    SyncStateRow,
    TenantRow,
    WebhookRow,
)
from api.db.session import make_engine, session_factory, unit_of_work
from api.domain.quota import NONE_KEY
from api.queue_worker import LEASE, QueueWorker
from tests.support.api import Api, make_tenant, make_token
from tests.support.queue import capacity_labels, h100_server, serve_round
from tests.support.race import race

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
REQUEST = """mutation($i: ProvisionRequestInput!) { requestDevices(input: $i) {
  id state } }"""
APPROVE = "mutation($id: ID!) { approveRequest(id: $id) { id state decidedBy } }"
REJECT = "mutation($id: ID!) { rejectRequest(id: $id) { id state decidedBy } }"
CANCEL = "mutation($id: ID!) { cancelRequest(id: $id) { id state } }"
MATCH = "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"
RELEASE = """mutation($e: String!, $t: String) {
  releaseAllocation(environment: $e, tenant: $t) { id releasedAt } }"""
ALLOCATION = """query($e: String!) { allocations(filter: {environment: $e}) { edges { node {
  id state preemptAt releasedAt releasedBy } } } }"""
GRACE = timedelta(seconds=300)
AFTER_GRACE = GRACE + timedelta(seconds=1)
RUNS = 8  # each race, per backend


def _webhook(db: sessionmaker[Session], tenant: str) -> None:
    """Written straight to the database (tests/api/test_events_outbox.py): the outbox only
    asks whether one exists."""
    with unit_of_work(db) as session:
        tenant_id = session.scalar(select(TenantRow.id).where(TenantRow.slug == tenant))
        hook = WebhookRow(url="https://example.test/h", secret="x", events=[], created_by="t")
        session.add(hook)
        hook.tenant_id = tenant_id


@pytest.fixture
def fleet(api: Api, db: sessionmaker[Session]) -> dict[str, Api]:
    """Tenants acme and other (each with a webhook and a tenant GPU quota, so the outbox
    and the counters are written); four 8-GPU servers in the pool."""
    for tenant in ("acme", "other"):
        make_tenant(db, tenant)
        _webhook(db, tenant)
        api.ok(f'mutation {{ setQuota(input: {{tenant: "{tenant}", gpus: 1000}}) {{ gpus }} }}')
    api.ok(IMPORT, d=json.dumps({"devices": [h100_server(f"gpu-{n}") for n in range(4)]}))
    return {
        "platform": api,
        "admin": api.as_(make_token(db, "partner-admin", "acme")),
        "admin-2": api.as_(make_token(db, "partner-admin", "acme")),
        "provisioner": api.as_(make_token(db, "provisioner", "acme")),
        "owner": api.as_(make_token(db, "provisioner", "other")),
    }


@pytest.fixture
def replicas(database_url: str, db: sessionmaker[Session]) -> Iterator[list[sessionmaker[Session]]]:
    """Two replicas' database sides: an engine (a pool) each."""
    engines = [make_engine(database_url) for _ in range(2)]
    yield [session_factory(engine) for engine in engines]
    for engine in engines:
        engine.dispose()


def _hold(platform: Api, environment: str, **extra: Any) -> str:
    """One whole server for tenant other; the allocation's id."""
    given = {"environment": environment, "labels": capacity_labels(), "variables": {"gpu": "8"},
             "tenant": "other", **extra}  # fmt: skip
    return str(platform.ok(MATCH, i=given)["matchDevice"]["allocation"]["id"])


def _ask(caller: Api, environment: str, nodes: int = 1, **extra: Any) -> dict[str, Any]:
    given = {"environment": environment, "reason": "race", **extra}
    if nodes == 1:
        given |= {"labels": capacity_labels(), "variables": {"gpu": "8"}}
    else:
        labels = capacity_labels("nodes", "requiredNoofNodes")
        given |= {"labels": labels, "variables": {"nodes": nodes}}
    answer: dict[str, Any] = caller.ok(REQUEST, i=given)["requestDevices"]
    return answer


def _serve(
    sessions: sessionmaker[Session], after: timedelta = timedelta(0), live: LiveIndex | None = None
) -> Any:
    """One queue round, ``after`` from now."""
    return serve_round(sessions, after, live, grace=GRACE)


def _state(db: sessionmaker[Session], request_id: str) -> ProvisionRequestRow:
    with db() as session:
        row = session.get(ProvisionRequestRow, request_id)
        assert row is not None
        return row


def _allocation(caller: Api, environment: str) -> dict[str, Any]:
    """The environment's newest allocation, as its owner reads it."""
    edges = caller.ok(ALLOCATION, e=environment)["allocations"]["edges"]
    found: dict[str, Any] = edges[0]["node"]
    return found


def _events(db: sessionmaker[Session], kind: str) -> Counter[str]:
    """How many events of ``kind`` (io.gpuinv.<kind>) each subject has."""
    with db() as session:
        kind = "io.gpuinv." + kind
        return Counter(session.scalars(select(EventRow.subject).where(EventRow.type == kind)))


def books(engine: Engine) -> list[str]:
    """What is wrong with the tables, read in one snapshot (empty: nothing)."""
    tables = (ProvisionRequestRow, AllocationRow, AllocationDeviceRow, DeviceRow, QuotaRow)
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            read = [connection.execute(select(t.__table__)).all() for t in tables]
            audit = connection.execute(
                select(AuditEventRow.object_id, AuditEventRow.action).where(
                    AuditEventRow.object_kind == "allocation"
                )
            ).all()
    requests, allocations, parts, devices, quotas = read
    requests = sorted(requests, key=lambda r: r.requested_at)
    parts = [p for p in parts if p.active]
    quotas = [q for q in quotas if (q.project_key, q.model_key) == (NONE_KEY, NONE_KEY)]
    wrong: list[str] = []
    every = {a.id: a for a in allocations}
    active = {a.id: a for a in allocations if a.released_at is None}
    serving: Counter[str] = Counter()
    for r in requests:
        if r.state == "FULFILLED":
            # Its allocation: active, or released since by someone (not by the queue).
            serving[r.allocation_id] += 1
            held = every.get(r.allocation_id)
            if held is None or (held.scope, held.environment) != (r.scope, r.environment):
                wrong.append(f"request {r.environment} is FULFILLED without an allocation")
            elif held.released_by == request_claim.QUEUE.actor:
                wrong.append(f"request {r.environment} is FULFILLED, its allocation freed")
        elif r.allocation_id is not None:
            wrong.append(f"request {r.environment} is {r.state} with allocation {r.allocation_id}")
    wrong += [f"allocation {a} serves {n} requests" for a, n in serving.items() if n > 1]
    for a in active.values():  # made by the queue for a request that is not fulfilled
        asked = [r for r in requests if (r.scope, r.environment) == (a.scope, a.environment)]
        if asked and a.id not in serving:
            wrong.append(f"active allocation {a.environment}: its request is {asked[-1].state}")
    held_by: dict[str, list[Any]] = {}
    for p in parts:
        if p.allocation_id not in active:
            wrong.append(f"released allocation {p.allocation_id} still holds a device")
        held_by.setdefault(p.device_id, []).append(p)
    for d in devices:
        on = held_by.get(d.id, [])
        whole = [p for p in on if p.exclusive]
        expected = 0 if whole else d.total_gpus - sum(p.gpus for p in on)
        if (whole and len(on) > 1) or expected < 0 or d.free_gpus != expected:
            wrong.append(f"{d.hostname}: {len(on)} holds, {d.free_gpus} GPUs free")
        if bool(whole) != (d.status == "allocated"):
            wrong.append(f"{d.hostname} is {d.status} with {len(whole)} whole holds")
    total = {d.id: d.total_gpus for d in devices}
    for q in quotas:
        mine = [a for a in active.values() if a.tenant_id == q.tenant_id]
        gpus = {a.id: sum(total[p.device_id] if p.exclusive else p.gpus for p in parts
                          if p.allocation_id == a.id) for a in mine}  # fmt: skip
        used = sum(gpus[a.id] for a in mine if not a.borrowed)
        borrowed = sum(gpus[a.id] for a in mine if a.borrowed)
        nodes = sum(1 for p in parts if p.exclusive and p.allocation_id in gpus)
        counters = (q.used_gpus, q.borrowed_gpus, q.used_nodes)
        if counters != (used, borrowed, nodes):
            wrong.append(f"tenant {q.tenant_id}: counters (used, borrowed, nodes) {counters}, "
                         f"its active allocations hold {(used, borrowed, nodes)}")  # fmt: skip
    ends = ("release", "preempt", "expire", "cancel")
    releases = Counter(o for o, action in audit if action in ends)
    wrong += [f"allocation {a} released {n} times" for a, n in releases.items() if n > 1]
    return wrong


# -- two replicas serving the queue ----------------------------------------------------------


def test_two_replicas_serving_at_once_fulfil_each_request_once(
    fleet: dict[str, Api],
    db: sessionmaker[Session],
    replicas: list[sessionmaker[Session]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eight requests queued behind a full pool; three servers freed; both replicas serve
    two rounds each, started together: three requests fulfilled, each once, each on an
    allocation of its own that stays active. A gate (around ``try_fulfil``) holds each
    replica's first try until both have read the queue, so the rounds overlap for sure."""
    for n in range(4):
        _hold(fleet["platform"], f"o-{n}")
    asked = [_ask(fleet["admin"], f"r-{n}", priority=n % 3)["id"] for n in range(8)]
    assert {_state(db, r).state for r in asked} == {"QUEUED"}
    for n in range(3):
        fleet["owner"].ok(RELEASE, e=f"o-{n}")
    gate, first = threading.Barrier(2), threading.local()
    tried = request_claim.try_fulfil

    def gated(*args: Any) -> Any:
        if not getattr(first, "done", False):
            first.done = True
            gate.wait(timeout=30)
        return tried(*args)

    monkeypatch.setattr(request_queue, "try_fulfil", gated)
    rounds: list[Any] = []

    def replica(sessions: sessionmaker[Session]) -> Callable[[], None]:
        live = LiveIndex()
        return lambda: rounds.extend(_serve(sessions, live=live) for _ in range(2))

    race([replica(sessions) for sessions in replicas], aborting=[gate])
    monkeypatch.undo()
    fulfilled = Counter(r for done in rounds for r in done.fulfilled)
    assert set(fulfilled.values()) == {1}, f"fulfilled twice: {fulfilled}"
    assert books(replicas[0].kw["bind"]) == []
    assert _serve(db).fulfilled == []  # nothing was left undone, nothing freed since
    states = {r: _state(db, r).state for r in asked}
    assert sorted(r for r, s in states.items() if s == "FULFILLED") == sorted(fulfilled)
    assert len(fulfilled) == 3 and Counter(states.values())["QUEUED"] == 5
    assert _events(db, "request.fulfilled") == Counter(fulfilled)


def test_a_replica_that_read_the_queue_before_another_fulfilled_leaves_it_fulfilled(
    fleet: dict[str, Api], db: sessionmaker[Session], replicas: list[sessionmaker[Session]]
) -> None:
    """The two-replica race, one step at a time: replica b reads the queue; replica a
    serves a round and fulfils the request; replica b then tries the request it read (as
    its round would next). The request must stay fulfilled, on an active allocation."""
    for n in range(4):
        _hold(fleet["platform"], f"o-{n}")
    asked = _ask(fleet["admin"], "r-0")["id"]
    fleet["owner"].ok(RELEASE, e="o-0")
    [stale] = request_queue.ordered_waiting(replicas[1], utcnow())
    assert _serve(replicas[0]).fulfilled == [asked]
    request_claim.try_fulfil(replicas[1], LiveIndex(), stale, utcnow())
    assert _allocation(fleet["admin"], "r-0")["state"] == "ACTIVE"
    assert books(replicas[0].kw["bind"]) == []


def test_one_queue_worker_leads_and_another_takes_over_when_it_stops(
    fleet: dict[str, Api], db: sessionmaker[Session], replicas: list[sessionmaker[Session]]
) -> None:
    """Two QueueWorkers (of two replicas; named apart by hand, as both live in this
    process) look at once: one leads and serves, the other's run_once is None for as long
    as the lease holds; once the leader gives the lease up, the other serves."""
    for n in range(4):
        _hold(fleet["platform"], f"o-{n}")
    asked = [_ask(fleet["admin"], f"r-{n}")["id"] for n in range(3)]
    fleet["owner"].ok(RELEASE, e="o-0")
    workers = [QueueWorker(s, LiveIndex(), request_queue.QueuePolicy()) for s in replicas]
    for name, worker in zip("ab", workers, strict=True):
        worker.worker = f"replica-{name}:queue"
    answers: dict[int, Any] = {}

    def look(n: int) -> Callable[[], None]:
        return lambda: answers.__setitem__(n, asyncio.run(workers[n].run_once()))

    race([look(0), look(1)])
    [leader] = [n for n, done in answers.items() if done is not None]
    follower = workers[1 - leader]
    assert len(answers[leader].fulfilled) == 1
    fleet["owner"].ok(RELEASE, e="o-1")  # something to do: the follower still waits
    for _ in range(3):
        assert asyncio.run(follower.run_once()) is None
    give_up_lead(workers[leader].sessions, LEASE, workers[leader].worker)
    taken_over = asyncio.run(follower.run_once())
    assert taken_over is not None and len(taken_over.fulfilled) == 1
    assert asyncio.run(workers[leader].run_once()) is None  # the follower leads now
    with db() as session:
        assert session.get(SyncStateRow, LEASE).leader == follower.worker  # type: ignore[union-attr]
    states = Counter(_state(db, r).state for r in asked)
    assert states == Counter({"FULFILLED": 2, "QUEUED": 1})
    assert books(replicas[0].kw["bind"]) == []
    assert sum(_events(db, "request.fulfilled").values()) == 2


def test_a_release_committed_while_a_round_runs_brings_the_next_round(
    fleet: dict[str, Api],
    db: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker serves a round when something changed since it last looked: a release
    committed while a round runs (after the round tried a request) must count as a
    change, not be taken for the round's own doing. The release is made inside the round
    here (wrapping ``serve``): the only way to place it there for sure."""
    for n in range(4):
        _hold(fleet["platform"], f"o-{n}")
    asked = _ask(fleet["admin"], "r-0")["id"]
    worker = QueueWorker(db, LiveIndex(), request_queue.QueuePolicy())
    serve = request_queue.serve

    def serve_then_release(*args: Any) -> Any:
        done = serve(*args)  # r-0 tried: nothing fits
        fleet["owner"].ok(RELEASE, e="o-0")
        return done

    monkeypatch.setattr(request_queue, "serve", serve_then_release)
    assert asyncio.run(worker.run_once()).fulfilled == []  # type: ignore[union-attr]
    monkeypatch.undo()
    nxt = asyncio.run(worker.run_once())
    assert nxt is not None and nxt.fulfilled == [asked]


# -- the preemption deadline: a release, a cancel ----------------------------------------------


def _jitter(rng: random.Random, work: Callable[[], Any], into: dict[str, Any], key: str) -> Any:
    """``work`` after 0 to 5 ms (varying which side of the race starts first); its
    answer, or the exception it raised, in ``into[key]``."""
    delay = rng.random() * 0.005

    def run() -> None:
        time.sleep(delay)
        try:
            into[key] = work()
        except Exception as exc:  # judged by the test
            into[key] = exc

    return run


def _release_all(platform: Api, db: sessionmaker[Session]) -> None:
    with db() as session:
        held = session.execute(
            select(AllocationRow.environment, TenantRow.slug)
            .join(TenantRow, TenantRow.id == AllocationRow.tenant_id)
            .where(AllocationRow.released_at.is_(None))
        ).all()
    for environment, tenant in held:
        platform.ok(RELEASE, e=environment, t=tenant)


def _preempting(fleet: dict[str, Api], db: sessionmaker[Session], run: int, nodes: int) -> str:
    """The pool held by other: ``nodes`` preemptible servers, the rest not; acme asks for
    ``nodes`` servers at priority 10, and a round marks the preemptible ones. The id."""
    for n in range(4):
        _hold(fleet["platform"], f"v{run}-{n}", preemptible=n < nodes)
    asked = str(_ask(fleet["admin"], f"r{run}", nodes, priority=10)["id"])
    assert len(_serve(db).preempting) == nodes
    return asked


def test_a_release_at_the_preemption_deadline_releases_the_victim_once(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    """The victim's owner releases it while a round past the deadline carries out its
    preemption (for a one-server request, and for a two-server one whose other victim is
    the round's alone): the victim is released once, by one of them; the request is
    fulfilled once, by that round or by the next; the books balance."""
    rng = random.Random(17)
    for run in range(RUNS):
        nodes = 1 + run % 2
        asked = _preempting(fleet, db, run, nodes)
        victim = _allocation(fleet["owner"], f"v{run}-0")["id"]
        got: dict[str, Any] = {}
        race([_jitter(rng, partial(fleet["owner"].run, RELEASE, e=f"v{run}-0"), got, "release"),
              _jitter(rng, partial(_serve, db, AFTER_GRACE), got, "round")])  # fmt: skip
        assert not isinstance(got["round"], Exception), got["round"]
        answer = got["release"]
        assert not answer.get("errors"), answer
        assert answer["data"]["releaseAllocation"]["releasedAt"]
        for later in (AFTER_GRACE, 3 * GRACE):  # the next deadline, should it plan again
            if _state(db, asked).state != "FULFILLED":
                _serve(db, later)
        assert _state(db, asked).state == "FULFILLED", (run, got["round"])
        ends = _events(db, "allocation.released") + _events(db, "allocation.preempted")
        assert ends[victim] == 1, (run, ends)
        assert _events(db, "request.fulfilled")[asked] == 1
        assert books(db.kw["bind"]) == [], run
        _release_all(fleet["platform"], db)
    assert books(db.kw["bind"]) == []


def test_a_request_cancelled_in_its_grace_spares_its_victims(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    asked = _preempting(fleet, db, 0, 2)
    marked = _allocation(fleet["owner"], "v0-0")
    assert (marked["state"], bool(marked["preemptAt"])) == ("PREEMPTING", True)
    assert fleet["admin"].ok(CANCEL, id=asked)["cancelRequest"]["state"] == "CANCELLED"
    for n in range(4):
        spared = _allocation(fleet["owner"], f"v0-{n}")
        assert (spared["state"], spared["preemptAt"]) == ("ACTIVE", None)
    done = _serve(db, AFTER_GRACE)
    assert (done.preempted, done.preempting, done.fulfilled) == ([], [], [])
    assert {_allocation(fleet["owner"], f"v0-{n}")["state"] for n in range(4)} == {"ACTIVE"}
    assert _state(db, asked).allocation_id is None
    assert _events(db, "allocation.preempted") == Counter()
    assert books(db.kw["bind"]) == []


def _cancel_mid_take_over(
    fleet: dict[str, Api], asked: str, got: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> threading.Thread:
    """Cancel the request through the API right after the take-over has released its
    victims, before it claims: the take-over's release (api.db.preemption.free_allocation,
    patched) starts the cancel and waits for its answer, at most 2 s (if the take-over
    holds the victims' rows until it commits, as it should, the cancel waits for it)."""
    real = release.free_allocation
    cancel = threading.Thread(
        target=lambda: got.__setitem__("cancel", fleet["admin"].run(CANCEL, id=asked))
    )

    def releasing(*args: Any) -> bool:
        freed: bool = real(*args)
        if not cancel.is_alive() and "cancel" not in got:
            cancel.start()
            cancel.join(timeout=2)
        return freed

    monkeypatch.setattr(preemption, "free_allocation", releasing)
    return cancel


def _all_or_nothing(fleet: dict[str, Api], db: sessionmaker[Session], run: int, asked: str,
                    got: dict[str, Any]) -> str:  # fmt: skip
    """Judge one cancel against one take-over; the request's state."""
    assert not isinstance(got["round"], Exception), got["round"]
    row, victim = _state(db, asked), _allocation(fleet["owner"], f"v{run}-0")
    errors = got["cancel"].get("errors")
    if row.state == "CANCELLED":
        assert not errors, errors
        assert (victim["state"], victim["preemptAt"]) == ("ACTIVE", None), run
        assert row.allocation_id is None
        assert _serve(db, 2 * AFTER_GRACE).preempted == []
    else:
        assert row.state == "FULFILLED", row.state
        assert errors and errors[0]["extensions"]["code"] == "BAD_INPUT", errors
        assert "is FULFILLED" in errors[0]["message"]
        assert victim["state"] == "PREEMPTED"
        assert _allocation(fleet["admin"], f"r{run}")["state"] == "ACTIVE"
    kinds = ("request.cancelled", "request.fulfilled")
    assert sum(_events(db, kind)[asked] for kind in kinds) == 1
    assert books(db.kw["bind"]) == [], run
    _release_all(fleet["platform"], db)
    return row.state


def test_a_cancel_racing_the_take_over_is_all_or_nothing(
    fleet: dict[str, Api],
    db: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    """cancelRequest while a round past the deadline takes the victims' devices over:
    either the cancel wins (the victims keep their devices, nothing is allocated for the
    request) or the take-over does (the request FULFILLED, the cancel refused naming
    that state); never a cancelled request holding devices, nor a fulfilled one also
    cancelled. The first run lands the cancel inside the take-over on purpose; the others
    race the two."""
    outcomes: Counter[str] = Counter()
    asked, got = _preempting(fleet, db, 0, 1), dict[str, Any]()
    cancel = _cancel_mid_take_over(fleet, asked, got, monkeypatch)
    got["round"] = _serve(db, AFTER_GRACE)
    monkeypatch.undo()
    cancel.join(timeout=60)
    outcomes[_all_or_nothing(fleet, db, 0, asked, got)] += 1
    rng = random.Random(18)
    for run in range(1, RUNS):
        asked, got = _preempting(fleet, db, run, 1), dict[str, Any]()
        race([_jitter(rng, partial(fleet["admin"].run, CANCEL, id=asked), got, "cancel"),
              _jitter(rng, partial(_serve, db, AFTER_GRACE), got, "round")])  # fmt: skip
        outcomes[_all_or_nothing(fleet, db, run, asked, got)] += 1
    print(f"cancel vs take-over, {RUNS} runs: {dict(outcomes)}")


def test_a_request_that_no_longer_fits_at_its_deadline_leaves_the_victims_their_devices(
    fleet: dict[str, Api], db: sessionmaker[Session], request: pytest.FixtureRequest
) -> None:
    """request_queue's step 2: if the request no longer fits on the victims' devices (its
    tenant's quota lowered to nothing during the grace), the victims keep them."""
    asked = _preempting(fleet, db, 0, 1)
    fleet["platform"].ok('mutation { setQuota(input: {tenant: "acme", gpus: 0}) { gpus } }')
    assert _serve(db, AFTER_GRACE).preempted == []
    victim = _allocation(fleet["owner"], "v0-0")
    assert (victim["state"], victim["preemptAt"]) == ("ACTIVE", None)
    assert _state(db, asked).state == "QUEUED"
    assert books(db.kw["bind"]) == []


# -- two deciders at once ------------------------------------------------------------------------


@pytest.mark.parametrize("second", ["approve", "reject"])
def test_two_admins_deciding_at_once_one_decision_sticks(
    fleet: dict[str, Api], db: sessionmaker[Session], second: str
) -> None:
    """Two partner-admins of acme decide one pending request at the same instant (both
    approve; or one approves, the other rejects): exactly one succeeds, and the other is
    refused BAD_INPUT naming the state the winner left."""
    for n in range(4):
        _hold(fleet["platform"], f"o-{n}")  # an approved request queues
    rng = random.Random(19)
    decisions = {"approve": APPROVE, "reject": REJECT}
    for run in range(RUNS):
        asked = _ask(fleet["provisioner"], f"r{run}")["id"]
        got: dict[str, Any] = {}
        first = partial(fleet["admin"].run, APPROVE, id=asked)
        other = partial(fleet["admin-2"].run, decisions[second], id=asked)
        race([_jitter(rng, first, got, "approve"), _jitter(rng, other, got, second + "*")])
        ok = [k for k, answer in got.items() if not answer.get("errors")]
        assert len(ok) == 1, got
        [lost] = [answer["errors"][0] for answer in got.values() if answer.get("errors")]
        final = _state(db, asked).state
        assert final == ("REJECTED" if ok == ["reject*"] else "QUEUED"), (final, got)
        left = {"REJECTED"} if final == "REJECTED" else {"APPROVED", "QUEUED"}
        assert lost["extensions"]["code"] == "BAD_INPUT", lost
        assert any(f"is {state}," in lost["message"] for state in left), lost["message"]
        decided = _events(db, "request.approved") + _events(db, "request.rejected")
        assert decided[asked] == 1
