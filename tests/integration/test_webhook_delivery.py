"""Webhook deliveries end to end (DESIGN.md "Events", issue 16): events written by real
claims and releases through the API, sent by the real dispatcher (api/dispatcher.py) to a
real receiver, a small HTTP server on 127.0.0.1 that can be down, answer 500, answer late,
then recover. Time is a clock the test moves (the dispatcher's ``clock``), so an hour of
retries takes a second. Both backends; the two-replica test on PostgreSQL.

What is checked at the receiver: every event arrives; a later event of a subject never
before the earlier one was acknowledged; the signature is the HMAC of the exact body; the
CloudEvents fields; ``data`` is the allocation as GraphQL renders it; a tenant's webhook
hears only its tenant. Duplicates come only from lost acknowledgements (an answer after
the timeout), and then once per loss.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import webhook as webhook_db
from api.db.base import utcnow
from api.db.models import EventRow, WebhookDeliveryRow
from api.dispatcher import Dispatcher, Policy
from api.settings import Settings
from tests.support.api import TOKEN_CACHE_SECONDS, Api, make_tenant, make_token
from tests.support.database import fresh_postgres_database
from tests.support.fleet import fleet, labels, server
from tests.support.processes import serving, token
from tests.support.server import ServerThread, free_port

KEY = Fernet.generate_key().decode()
SECRET = "receiver-secret-0123456789"
CREATE = """mutation($i: CreateWebhookInput!) { createWebhook(input: $i) { id url tenant } }"""
ALLOCATION = """id environment tenant project inventoryType profile variables deviceDetails
  createdAt expiresAt releasedAt releasedBy preemptible borrowed priority state preemptAt
  devices { deviceId hostname exclusive cpu memoryMB storageGB gpus }"""
MATCH = f"""mutation($i: MatchDeviceInput!) {{ matchDevice(input: $i) {{
  allocation {{ {ALLOCATION} }} }} }}"""
RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { id } }"
DELIVERIES = """query($id: ID!) { webhookDeliveries(webhookId: $id) { eventId type subject
  status attempts responseCode error attemptLog { responseCode error } } }"""


# --- the receiver and the clock ------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int  # what the receiver answered (it may have answered too late)

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops the dispatcher's parallel connects


@dataclass
class Receiver:
    """POSTs land in ``received``. ``answer``: the status to give; ``delay``: seconds to
    wait before giving it (past the dispatcher's timeout: an acknowledgement lost);
    ``slow_first``: only each event's first request is late. ``stop()``: nothing listens."""

    port: int = field(default_factory=free_port)
    answer: int = 204
    delay: float = 0.0
    slow_first: bool = False
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    seen = any(r.body == body for r in receiver.received)
                    receiver.received.append(
                        Received(self.path, dict(self.headers), body, receiver.answer)
                    )
                    answer, delay = receiver.answer, receiver.delay
                if delay and not (receiver.slow_first and seen):
                    time.sleep(delay)
                try:
                    self.send_response(answer)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the dispatcher gave up waiting: the answer is lost
                    pass

            def log_message(self, *_: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, path: str = "/hook") -> list[dict[str, Any]]:
        with self._lock:
            return [r.event for r in self.received if r.path == path]


@dataclass
class FakeClock:
    at: datetime = field(default_factory=utcnow)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def dispatcher(db: sessionmaker[Session], clock: FakeClock, **policy: Any) -> Dispatcher:
    given = {"allow_private": True, "timeout": 1.0} | policy
    return Dispatcher(db, KEY, Policy(**given), clock)


async def drain(sender: Dispatcher, most: int = 50) -> int:
    """Rounds until one finds nothing to send; the attempts made."""
    sent = 0
    for _ in range(most):
        done = await sender.run_once()
        sent += done.sent
        if not done.busy:
            return sent
    raise AssertionError(f"still busy after {most} rounds")


# --- the service and a fleet -----------------------------------------------------------------


@pytest.fixture(scope="module")
def hooks_server(database_url: str, engine: Any) -> Iterator[ServerThread]:
    """The service with a secret key and private targets allowed, its own dispatcher off:
    the tests run the dispatcher themselves, on their clock."""
    settings = Settings(
        database_url=database_url,
        secret_key=KEY,
        webhook_allow_private=True,
        webhook_dispatch=False,
        lease_sweep_seconds=3600,
        token_cache_seconds=TOKEN_CACHE_SECONDS,
    )
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def platform(hooks_server: ServerThread, db: sessionmaker[Session]) -> Api:
    hooks_server.app.state.live_index.reset()  # the wipe bypassed the change feed
    admin = Api(hooks_server.url, make_token(db, "platform-admin"))
    make_tenant(db, "acme")
    make_tenant(db, "other")
    fleet(admin, *(server(f"gpu-{n}", gpus=8) for n in range(6)))
    return admin


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def create_webhook(caller: Api, url: str, **extra: Any) -> str:
    given = {"url": url, "secret": SECRET} | extra
    return str(caller.ok(CREATE, i=given)["createWebhook"]["id"])


def claim(caller: Api, environment: str, gpus: int = 8) -> dict[str, Any]:
    variables = {"gputype": "NVIDIA", "gpu": str(gpus)}
    kind = "baremetal" if gpus == 8 else "vcluster"  # a whole server, or a slice of one
    request = {"environment": environment, "labels": labels(kind), "variables": variables}
    allocation: dict[str, Any] = caller.ok(MATCH, i=request)["matchDevice"]["allocation"]
    return allocation


def outbox(db: sessionmaker[Session]) -> dict[str, tuple[int, str]]:
    """Every event written: id -> (seq, subject)."""
    with db() as session:
        return {e.id: (e.seq, e.subject) for e in session.scalars(select(EventRow))}


def assert_signed_cloud_events(received: list[Received]) -> None:
    for r in received:
        expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        assert r.headers["X-Gpuinv-Signature"] == expected
        assert r.headers["Content-Type"].startswith("application/cloudevents+json")
        event = r.event
        assert event["specversion"] == "1.0" and event["source"] == "/gpuinv"
        assert event["type"].startswith("io.gpuinv.") and event["time"].endswith("Z")
        assert {"id", "subject", "data"} <= event.keys()


def assert_in_order_per_subject(received: list[Received], events: dict[str, tuple[int, str]]):
    """No event was sent while an earlier one of its subject was not yet acknowledged."""
    acked: set[str] = set()
    for r in received:
        seq, subject = events[r.event["id"]]
        earlier = {i for i, (s, subj) in events.items() if subj == subject and s < seq}
        assert earlier <= acked, f"{r.event['type']} of {subject} sent before {earlier - acked}"
        if 200 <= r.answered < 300:
            acked.add(r.event["id"])


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def as_rendered(allocation: dict[str, Any]) -> dict[str, Any]:
    """An allocation with its times as instants (GraphQL writes +00:00, events Z)."""
    times = ("createdAt", "expiresAt", "releasedAt")
    return {k: _moment(v) if k in times else v for k, v in allocation.items()}


# --- the tests -------------------------------------------------------------------------------


def test_every_event_arrives_signed_and_in_order_through_down_500_and_recovery(
    platform: Api, db: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_webhook(platform, receiver.url())
    rendered = {f"env-{n}": claim(platform, f"env-{n}") for n in range(3)}
    for n in range(3):
        platform.ok(RELEASE, e=f"env-{n}")
    events = outbox(db)
    assert len(events) == 6
    clock = FakeClock()
    sender = dispatcher(db, clock)

    async def scenario() -> None:
        first = await sender.run_once()  # down: nothing listens
        assert (first.sent, first.failed) == (3, 3)  # one per subject: each release waits
        assert receiver.received == []
        receiver.answer = 500
        receiver.start()
        clock.advance(5)  # the first retry, after 5 s at most
        await drain(sender)
        assert receiver.received and all(r.answered == 500 for r in receiver.received)
        receiver.answer = 204
        for _ in range(8):  # retries every 5 s, 10 s, ...: an hour of waiting would do
            clock.advance(30)
            await drain(sender)
        await sender.close()

    asyncio.run(scenario())
    delivered = [r for r in receiver.received if r.answered == 204]
    assert sorted(r.event["id"] for r in delivered) == sorted(events)  # each once, none lost
    assert_signed_cloud_events(receiver.received)
    assert_in_order_per_subject(receiver.received, events)
    created = [r.event for r in delivered if r.event["type"] == "io.gpuinv.allocation.created"]
    for event in created:
        shown = rendered[event["data"]["environment"]]
        assert event["subject"] == shown["id"]
        assert as_rendered(event["data"]) == as_rendered(shown)
    log = platform.ok(DELIVERIES, id=hook)["webhookDeliveries"]
    assert len(log) == 6 and {d["status"] for d in log} == {"DELIVERED"}
    first = log[-1]  # newest first: the last is the first event
    codes = [a["responseCode"] for a in first["attemptLog"]]
    assert codes[0] is None and "Connect" in first["attemptLog"][0]["error"]
    assert 500 in codes and codes[-1] == 204 and first["attempts"] == len(codes)


def test_a_receiver_down_for_an_hour_loses_nothing(
    platform: Api, db: sessionmaker[Session], receiver: Receiver
) -> None:
    create_webhook(platform, receiver.url())
    for n in range(4):
        claim(platform, f"env-{n}")
    platform.ok(RELEASE, e="env-0")
    events = outbox(db)
    clock = FakeClock()
    sender = dispatcher(db, clock)

    async def scenario() -> list[int]:
        attempts = 0
        for _ in range(60):  # an hour, a minute at a time: nothing listens
            attempts += (await sender.run_once()).sent
            clock.advance(60)
        receiver.start()
        clock.advance(600)  # the longest wait between retries
        await drain(sender)
        await sender.close()
        return [attempts]

    [attempts] = asyncio.run(scenario())
    received = Counter(r.event["id"] for r in receiver.received)
    assert received == Counter(set(events)), "every event exactly once, none lost"
    with db() as session:
        rows = session.scalars(select(WebhookDeliveryRow).order_by(WebhookDeliveryRow.id)).all()
    assert {r.status for r in rows} == {"delivered"}
    assert attempts == sum(r.attempts - 1 for r in rows)
    # 5 s doubling to the 10-minute cap: about a dozen tries in the hour, not thousands;
    # the release waited for its allocation's creation and went at the first try.
    tries = sorted(r.attempts for r in rows)
    assert tries[0] == 1 and all(9 <= n <= 16 for n in tries[1:]), tries
    waits = _waits(rows[0].attempts_log)[:-1]  # (the last: the receiver's recovery)
    assert all(b >= a for a, b in itertools.pairwise(waits)), waits  # backing off
    assert max(waits) <= 600, waits


def _waits(log: list[dict[str, Any]]) -> list[float]:
    times = [datetime.fromisoformat(entry["at"]) for entry in log]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def test_a_delivery_is_given_up_after_its_maximum_age(
    platform: Api, db: sessionmaker[Session], receiver: Receiver
) -> None:
    hook = create_webhook(platform, receiver.url())
    claim(platform, "env-0")
    clock = FakeClock()
    sender = dispatcher(db, clock, max_age=timedelta(minutes=30))

    async def scenario() -> None:
        for _ in range(40):
            await sender.run_once()
            clock.advance(60)
        await sender.close()

    asyncio.run(scenario())
    [delivery] = platform.ok(DELIVERIES, id=hook)["webhookDeliveries"]
    assert delivery["status"] == "FAILED" and delivery["error"].startswith("given up after")
    assert not webhook_db.has_work(db, clock.now())


def test_a_tenants_webhook_hears_only_its_tenant_and_a_platform_webhook_hears_all(
    platform: Api, db: sessionmaker[Session], receiver: Receiver
) -> None:
    acme_admin = platform.as_(make_token(db, "partner-admin", "acme"))
    other_admin = platform.as_(make_token(db, "partner-admin", "other"))
    create_webhook(acme_admin, receiver.url("/acme"))
    create_webhook(other_admin, receiver.url("/other"))
    create_webhook(platform, receiver.url("/platform"))
    create_webhook(platform, receiver.url("/released"), events=["io.gpuinv.allocation.released"])
    receiver.start()
    acme = platform.as_(make_token(db, "provisioner", "acme"))
    other = platform.as_(make_token(db, "provisioner", "other"))
    claim(acme, "acme-env")
    claim(other, "other-env")
    acme.ok(RELEASE, e="acme-env")
    asyncio.run(_drain_and_close(dispatcher(db, FakeClock())))

    def seen(path: str) -> list[tuple[str | None, str]]:
        return sorted((e["data"]["tenant"], e["type"][10:]) for e in receiver.events(path))

    assert seen("/acme") == [("acme", "allocation.created"), ("acme", "allocation.released")]
    assert seen("/other") == [("other", "allocation.created")]
    assert seen("/platform") == sorted(seen("/acme") + seen("/other"))
    assert seen("/released") == [("acme", "allocation.released")]


async def _drain_and_close(sender: Dispatcher) -> None:
    await drain(sender)
    await sender.close()


def test_a_lost_acknowledgement_is_the_only_duplicate(
    platform: Api, db: sessionmaker[Session], receiver: Receiver
) -> None:
    """The receiver takes each event's first request but answers after the dispatcher's
    timeout: the dispatcher cannot know, so it sends that event again, once."""
    create_webhook(platform, receiver.url())
    for n in range(3):
        claim(platform, f"env-{n}")
    events = outbox(db)
    receiver.delay, receiver.slow_first = 1.5, True
    receiver.start()
    clock = FakeClock()
    sender = dispatcher(db, clock, timeout=0.5)

    async def scenario() -> None:
        await drain(sender)
        clock.advance(10)
        await drain(sender)
        await sender.close()

    asyncio.run(scenario())
    received = Counter(r.event["id"] for r in receiver.received)
    assert received == Counter({event_id: 2 for event_id in events})


def test_each_delivery_checks_the_address_again(
    platform: Api, db: sessionmaker[Session], receiver: Receiver
) -> None:
    """A webhook accepted while private targets were allowed is not sent to a loopback
    address (nor to a name that resolves to one) by a dispatcher that does not allow them."""
    hook = create_webhook(platform, receiver.url())
    named = create_webhook(platform, f"http://localhost:{receiver.port}/hook")
    receiver.start()
    claim(platform, "env-0")
    asyncio.run(_drain_and_close(dispatcher(db, FakeClock(), allow_private=False)))
    assert receiver.received == []
    for webhook_id, what in ((hook, "127.0.0.1 is a loopback address"),
                             (named, "localhost resolves to")):  # fmt: skip
        [delivery] = platform.ok(DELIVERIES, id=webhook_id)["webhookDeliveries"]
        assert delivery["status"] == "PENDING" and what in delivery["error"]
        assert "GPUINV_WEBHOOK_ALLOW_PRIVATE=1" in delivery["error"]


def test_concurrent_claims_never_take_one_delivery_twice(
    platform: Api, db: sessionmaker[Session]
) -> None:
    """Eight claimants at once (as dispatchers whose leases overlapped would be): every due
    delivery is claimed by exactly one of them."""
    for n in range(5):
        create_webhook(platform, f"http://127.0.0.1:9/hook-{n}")
    for n in range(6):
        claim(platform, f"env-{n}")
    now = utcnow()
    webhook_db.fan_out(db, now)
    barrier = threading.Barrier(8)
    claimed: list[list[int]] = [[] for _ in range(8)]

    def claimant(index: int) -> None:
        barrier.wait()
        while True:  # a claimant that lost a race gets nothing: it looks again
            found = webhook_db.claim_due(db, now, now + timedelta(minutes=5), 3)
            claimed[index] += [d.id for d in found]
            if not found and not webhook_db.has_work(db, now):
                return

    threads = [threading.Thread(target=claimant, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for ids in claimed for i in ids]
    assert len(every) == len(set(every)) == 30  # 6 events to 5 webhooks, each once
    assert sum(1 for ids in claimed if ids) > 1  # they did race


def _dispatching(monkeypatch: pytest.MonkeyPatch, poll: str) -> None:
    """The environment `gpuinv serve` reads: a key, private targets allowed, a short poll."""
    monkeypatch.setenv("GPUINV_SECRET_KEY", KEY)
    monkeypatch.setenv("GPUINV_WEBHOOK_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("GPUINV_WEBHOOK_POLL_SECONDS", poll)


def test_the_service_dispatches_on_its_own(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``gpuinv serve`` with a secret key sends without anyone's help, and syncState names
    the replica leading the dispatch."""
    url = f"sqlite:///{tmp_path / 'own.db'}"
    receiver.start()
    _dispatching(monkeypatch, "0.05")
    with serving(url, tmp_path) as (base, _):
        admin = Api(base, token(url, tmp_path))
        fleet(admin, server("gpu-0"))
        create_webhook(admin, receiver.url())
        claim(admin, "env-0")
        _wait(lambda: len(receiver.received) == 1, "the event to arrive")
        state = admin.ok('{ syncState(source: "webhooks") { leader leaseUntil } }')
        assert state["syncState"]["leader"]


def _wait(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_replicas_never_send_one_event_twice(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `gpuinv serve` processes on one PostgreSQL, both dispatching (one leads at a
    time), claims and releases through both: the receiver gets every event exactly once."""
    url, drop = fresh_postgres_database("gpuinv_hooks")
    receiver.start()
    _dispatching(monkeypatch, "0.02")
    try:
        with serving(url, tmp_path) as (first, _), serving(url, tmp_path) as (second, _):
            secret = token(url, tmp_path)
            one, two = Api(first, secret), Api(second, secret)
            fleet(one, *(server(f"gpu-{n}") for n in range(10)))
            create_webhook(two, receiver.url())
            for n in range(30):
                claim((one, two)[n % 2], f"env-{n}", gpus=2)
            for n in range(0, 30, 2):
                (two, one)[n % 4 // 2].ok(RELEASE, e=f"env-{n}")
            _wait(lambda: len(receiver.received) >= 45, "45 events", timeout=60)
            time.sleep(1.0)  # anything sent twice would have come by now
            leader = one.ok('{ syncState(source: "webhooks") { leader } }')["syncState"]
    finally:
        drop()
    received = Counter(r.event["id"] for r in receiver.received)
    assert len(received) == 45 and set(received.values()) == {1}, received.most_common(3)
    assert leader["leader"]  # one of the two
