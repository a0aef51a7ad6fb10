"""matchDevice under racing clients: the database keeps DESIGN.md's allocation invariants.

Every test fires many real HTTP clients at once (released together by a barrier) at a fleet
smaller than the demand, then reads the database directly and checks the invariants of
DESIGN.md "Allocation":

- an exclusive device belongs to at most one active allocation, and then holds no slice;
- a device is ``allocated`` exactly when an active allocation holds it whole;
- on every device, total - free == the sum of what its active allocation rows took, in
  every dimension, and 0 <= free <= total;
- an allocation has all its devices or none; a released one holds nothing.

"The number of successes equals what the fleet can hold" is checked soundly: without
releases capacity only shrinks, so a request refused with NO_MATCH must not fit anywhere in
the end state either; with releases interleaved, the remaining capacity is then filled
request by request and must take exactly what the database says is free, after which the
whole fleet is in use.

A single uvicorn process runs resolvers one at a time, so the in-thread tests start a second
replica on the same database (another app, engine and match index, as a second API
process would have) and split the clients between the two; the last test uses two real
``gpuinv serve`` processes on PostgreSQL.

Run with ``-s`` to see the figures (successes, NO_MATCH, CONCURRENT_UPDATE, retried
claims, wall time). CONCURRENT_UPDATE is a documented answer (a retry signal), so it is
counted, not failed: a refused match took nothing, and a refused release is retried as a
client would (on SQLite with two replicas a release can be refused when another replica
commits between its read and its write).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import AllocationDeviceRow, AllocationRow, DeviceRow
from api.db.session import make_engine, session_factory
from api.settings import Settings
from tests.support.api import Api
from tests.support.database import fresh_postgres_database
from tests.support.race import race
from tests.support.server import ServerThread, free_port

GPUINV = str(Path(sys.executable).with_name("gpuinv"))
HTTP_TIMEOUT = 30.0

MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id devices { deviceId hostname exclusive cpu gpus } } claimAttempts } }"""
RELEASE = """mutation($env: String!) { releaseAllocation(environment: $env) { id releasedAt } }"""
CONFIG = json.dumps(
    [
        {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
        {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        {"type": "capacity", "keyInVariable": "cpu", "keyInCapacity": "requiredCPU"},
    ]
)
WHOLE, SLICE = "baremetal", "vcluster"
OK, NO_MATCH, CONCURRENT_UPDATE = "OK", "NO_MATCH", "CONCURRENT_UPDATE"
ACCEPTABLE = {OK, NO_MATCH, CONCURRENT_UPDATE}


def gpu_server(hostname: str, gpus: int = 8, cpu: int = 128) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "totalcpu": cpu,
        "totalmemoryMB": 1048576,
        "totalstorageGB": 8000,
        "tags": {"location": "india"},
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB"}] * gpus,
    }


# --- the clients ------------------------------------------------------------------------


@dataclass
class Outcome:
    code: str  # OK, or the error's extensions.code
    kind: str
    gpu: int
    environment: str
    allocation: dict[str, Any] | None = None
    attempts: int = 0


@dataclass
class Tally:
    """What every client saw, collected from all threads."""

    outcomes: list[Outcome] = field(default_factory=list)
    releases: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def released(self) -> None:
        with self.lock:
            self.releases += 1

    def codes(self) -> Counter[str]:
        return Counter(o.code for o in self.outcomes)

    def retried(self) -> int:
        """Matches whose claim lost a race at least once and was retried."""
        return sum(1 for o in self.outcomes if o.attempts > 1)

    def summary(self, label: str, seconds: float) -> str:
        codes = self.codes()
        return (
            f"[{label}] {len(self.outcomes)} matches, {self.releases} releases in "
            f"{seconds:.2f}s: {codes[OK]} ok, {codes[NO_MATCH]} NO_MATCH, "
            f"{codes[CONCURRENT_UPDATE]} CONCURRENT_UPDATE, {self.retried()} retried claims "
            f"(max attempts {max((o.attempts for o in self.outcomes), default=0)})"
        )


class Client:
    """One caller with its own connection, pointed at one server."""

    def __init__(self, url: str, token: str):
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
        )

    def close(self) -> None:
        self.http.close()

    def _post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/graphql", json={"query": query, "variables": variables})
        assert response.status_code == 200, f"HTTP {response.status_code}: {response.text}"
        return response.json()

    def match(self, environment: str, kind: str, gpu: int, cpu: int = 0) -> Outcome:
        variables: dict[str, Any] = {"gputype": "NVIDIA", "gpu": gpu}
        if cpu:
            variables["cpu"] = cpu
        given = {
            "environment": environment,
            "labels": {
                "paas.envmgmt.io/inventory": kind,
                "paas.envmgmt.io/inventory.config": CONFIG,
            },
            "variables": variables,
        }
        body = self._post(MATCH, {"input": given})
        if body.get("errors"):
            error = body["errors"][0]
            code = (error.get("extensions") or {}).get("code", "?")
            assert code in ACCEPTABLE, f"matchDevice {environment}: {error}"
            return Outcome(code, kind, gpu, environment)
        result = body["data"]["matchDevice"]
        return Outcome(OK, kind, gpu, environment, result["allocation"], result["claimAttempts"])

    def release(self, environment: str, tally: Tally) -> dict[str, Any]:
        """Release; a release is never refused (it takes SQLite's write lock up front)."""
        body = self._post(RELEASE, {"env": environment})
        assert not body.get("errors"), f"releaseAllocation {environment}: {body['errors']}"
        released = body["data"]["releaseAllocation"]
        assert released is not None and released["releasedAt"], released
        tally.released()
        return released


@pytest.fixture
def replica(database_url: str, api: Api) -> Iterator[Api]:
    """A second API process's worth of state (app, engine, match index) on the same
    database, serving in its own thread with its own event loop."""
    with ServerThread(Settings(database_url=database_url)) as running:
        yield Api(running.url, api.token)


@pytest.fixture
def clients(api: Api, replica: Api) -> Iterator[Callable[[int], list[Client]]]:
    """make(n): the first n clients, alternating between the two servers."""
    made: list[Client] = []

    def make(n: int) -> list[Client]:
        for i in range(len(made), n):
            made.append(Client((api, replica)[i % 2].url, api.token or ""))
        return made[:n]

    yield make
    for client in made:
        client.close()


def import_fleet(url: str, token: str, devices: list[dict[str, Any]]) -> None:
    response = httpx.post(
        f"{url}/graphql",
        json={
            "query": "mutation($d: String!) { importInventory(data: $d) { created } }",
            "variables": {"d": json.dumps({"devices": devices})},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    body = response.json()
    assert not body.get("errors"), body["errors"]
    assert body["data"]["importInventory"]["created"] == len(devices)


# --- the database's own account ---------------------------------------------------------


@dataclass
class DeviceState:
    hostname: str
    status: str
    total: tuple[int, int, int, int]  # cpu, memory MB, storage GB, GPUs
    free: tuple[int, int, int, int]

    @property
    def whole_and_free(self) -> bool:
        return self.status == "available" and self.free == self.total


@dataclass
class Ledger:
    devices: dict[str, DeviceState]
    active: dict[str, list[AllocationDeviceRow]]  # active allocation id -> its active rows

    @property
    def free_gpus(self) -> int:
        return sum(d.free[3] for d in self.devices.values() if d.status == "available")

    @property
    def max_free_gpus(self) -> int:
        return max((d.free[3] for d in self.devices.values() if d.status == "available"), default=0)


def check_invariants(sessions: sessionmaker[Session]) -> Ledger:
    """Read the allocation state straight from the tables and check every invariant."""
    with sessions() as session, session.begin():  # one snapshot of everything
        devices = list(session.scalars(select(DeviceRow).where(DeviceRow.kind == "baremetal")))
        rows = list(session.scalars(select(AllocationDeviceRow)))
        allocations = {a.id: a for a in session.scalars(select(AllocationRow))}
    state = {
        d.id: DeviceState(
            d.hostname,
            d.status,
            (d.total_cpu, d.total_memory_mb, d.total_storage_gb, d.total_gpus),
            (d.free_cpu, d.free_memory_mb, d.free_storage_gb, d.free_gpus),
        )
        for d in devices
    }
    problems: list[str] = []
    active_rows = [r for r in rows if r.active]
    exclusive = Counter(r.device_id for r in active_rows if r.exclusive)
    holders = Counter(r.device_id for r in active_rows)
    for device_id, count in exclusive.items():
        if count > 1:
            problems.append(f"{state[device_id].hostname}: in {count} active exclusive rows")
        if holders[device_id] > count:
            problems.append(f"{state[device_id].hostname}: held whole and sliced at once")
    allocated = {i for i, d in state.items() if d.status == "allocated"}
    if allocated != set(exclusive):
        problems.append(
            f"status 'allocated' on {sorted(state[i].hostname for i in allocated)} but held "
            f"whole: {sorted(state[i].hostname for i in exclusive)}"
        )
    for device_id, device in state.items():
        taken = [0, 0, 0, 0]
        for row in active_rows:
            if row.device_id == device_id:
                for n, amount in enumerate((row.cpu, row.memory_mb, row.storage_gb, row.gpus)):
                    taken[n] += amount
        used = tuple(t - f for t, f in zip(device.total, device.free, strict=True))
        if used != tuple(taken):
            problems.append(f"{device.hostname}: total - free = {used}, rows took {tuple(taken)}")
        if not all(0 <= f <= t for f, t in zip(device.free, device.total, strict=True)):
            problems.append(f"{device.hostname}: free {device.free} outside 0..{device.total}")
    active: dict[str, list[AllocationDeviceRow]] = {
        a.id: [] for a in allocations.values() if a.released_at is None
    }
    for row in active_rows:
        if row.allocation_id not in active:
            problems.append(f"released allocation {row.allocation_id} still holds {row.hostname}")
        else:
            active[row.allocation_id].append(row)
    for allocation_id, held in active.items():
        if len(held) != 1:  # every request here asks for one node
            problems.append(f"active allocation {allocation_id} holds {len(held)} devices")
    assert not problems, "allocation invariants violated:\n" + "\n".join(problems)
    return Ledger(state, active)


def assert_active_are_the_kept_ones(ledger: Ledger, kept: list[Outcome]) -> None:
    """The active allocations are exactly those the clients got and did not release,
    on the device and with the amounts each response reported."""
    assert set(ledger.active) == {o.allocation["id"] for o in kept if o.allocation}
    for outcome in kept:
        assert outcome.allocation is not None
        (reported,) = outcome.allocation["devices"]
        (row,) = ledger.active[outcome.allocation["id"]]
        assert (row.device_id, row.exclusive) == (reported["deviceId"], outcome.kind == WHOLE)
        expected_gpus = ledger.devices[row.device_id].total[3] if row.exclusive else outcome.gpu
        assert row.gpus == reported["gpus"] == expected_gpus


def fill_up(clients: list[Client], ledger: Ledger, label: str) -> None:
    """Take what is left, one request at a time, alternating servers: exactly the free
    whole devices go to whole-node requests, then exactly the free GPUs to 1-GPU slices;
    afterwards nothing is free. Proves that the fleet holds what the database says."""
    expected_whole = sum(1 for d in ledger.devices.values() if d.whole_and_free)
    whole = _take_until_no_match(clients, f"fill-{label}-whole", WHOLE)
    assert whole == expected_whole, f"{whole} whole nodes taken, {expected_whole} were free"
    after_whole = sum(d.free[3] for d in ledger.devices.values() if not d.whole_and_free)
    slices = _take_until_no_match(clients, f"fill-{label}-slice", SLICE)
    assert slices == after_whole, f"{slices} 1-GPU slices taken, {after_whole} GPUs were free"


def _take_until_no_match(clients: list[Client], prefix: str, kind: str) -> int:
    taken = 0
    while True:
        client = clients[taken % len(clients)]
        outcome = client.match(f"{prefix}-{taken}", kind, 8 if kind == WHOLE else 1)
        if outcome.code == NO_MATCH:
            return taken
        assert outcome.code == OK, outcome
        taken += 1
        assert taken <= 10_000


def backend(database_url: str) -> str:
    return database_url.split(":", 1)[0]


# --- the tests --------------------------------------------------------------------------


def test_racing_whole_node_requests_take_each_server_once_and_the_rest_get_no_match(
    api: Api,
    db: sessionmaker[Session],
    clients: Callable[[int], list[Client]],
    database_url: str,
) -> None:
    servers, callers = 10, 24
    import_fleet(api.url, api.token or "", [gpu_server(f"gpu-{n:02}") for n in range(servers)])
    tally = Tally()
    workers = [
        lambda c=c, n=n: tally.add(c.match(f"whole-{n}", WHOLE, 8))
        for n, c in enumerate(clients(callers))
    ]
    elapsed = race(workers)
    print("\n" + tally.summary(f"{backend(database_url)} whole nodes", elapsed))

    codes = tally.codes()
    assert set(codes) <= ACCEPTABLE
    assert codes[OK] <= servers
    if codes[NO_MATCH]:  # capacity only shrinks here: a refusal means the fleet was full
        assert codes[OK] == servers, tally.summary("whole nodes", elapsed)
    assert codes[OK] + codes[NO_MATCH] + codes[CONCURRENT_UPDATE] == callers
    ledger = check_invariants(db)
    kept = [o for o in tally.outcomes if o.code == OK]
    assert_active_are_the_kept_ones(ledger, kept)
    assert len({o.allocation["devices"][0]["deviceId"] for o in kept if o.allocation}) == len(kept)
    assert sum(d.status == "allocated" for d in ledger.devices.values()) == len(ledger.active)
    fill_up(clients(2), ledger, "after")
    check_invariants(db)


def test_racing_slices_never_overfill_a_server_and_refusals_did_not_fit(
    api: Api,
    db: sessionmaker[Session],
    clients: Callable[[int], list[Client]],
    database_url: str,
) -> None:
    servers, callers = 4, 40
    import_fleet(api.url, api.token or "", [gpu_server(f"gpu-{n}") for n in range(servers)])
    tally = Tally()
    sizes = [1 + n % 3 for n in range(callers)]  # 1, 2, 3 GPUs: 79 asked, 32 in the fleet
    workers = [
        lambda c=c, n=n: tally.add(c.match(f"slice-{n}", SLICE, sizes[n], cpu=10 * sizes[n]))
        for n, c in enumerate(clients(callers))
    ]
    elapsed = race(workers)
    print("\n" + tally.summary(f"{backend(database_url)} slices", elapsed))

    codes = tally.codes()
    assert set(codes) <= ACCEPTABLE
    ledger = check_invariants(db)
    kept = [o for o in tally.outcomes if o.code == OK]
    assert_active_are_the_kept_ones(ledger, kept)
    granted = sum(o.gpu for o in kept)
    assert granted + ledger.free_gpus == servers * 8
    for device_id in ledger.devices:  # cpu was taken in step with the GPUs
        held = [r for rows in ledger.active.values() for r in rows if r.device_id == device_id]
        assert sum(r.cpu for r in held) == 10 * sum(r.gpus for r in held)
    # Capacity only shrinks here, so whatever was refused then does not fit now either.
    refused = [o for o in tally.outcomes if o.code == NO_MATCH]
    fits_now = [o.environment for o in refused if o.gpu <= ledger.max_free_gpus]
    assert not fits_now, (
        f"refused with NO_MATCH although a server has {ledger.max_free_gpus} GPUs free: {fits_now}"
    )
    fill_up(clients(2), ledger, "after")
    assert check_invariants(db).free_gpus == 0


def test_matches_and_releases_interleaved_leave_exactly_the_kept_allocations(
    api: Api,
    db: sessionmaker[Session],
    clients: Callable[[int], list[Client]],
    database_url: str,
) -> None:
    servers, holders, cyclers, rounds = 6, 10, 8, 5
    import_fleet(api.url, api.token or "", [gpu_server(f"gpu-{n}") for n in range(servers)])
    tally = Tally()
    pool = clients(holders + cyclers)
    kept: list[Outcome] = []
    kept_lock = threading.Lock()

    def hold(client: Client, n: int) -> None:
        # Half whole nodes, half 4-GPU slices: 5 x 8 + 5 x 4 = 60 GPUs asked of 48.
        kind, gpu = (WHOLE, 8) if n % 2 == 0 else (SLICE, 4)
        outcome = client.match(f"holder-{n}", kind, gpu)
        tally.add(outcome)
        if outcome.code == OK:
            with kept_lock:
                kept.append(outcome)

    def cycle(client: Client, n: int) -> None:
        environment = f"cycler-{n}"  # the same environment again once released
        for loop in range(rounds):
            kind, gpu = (WHOLE, 8) if (n + loop) % 2 == 0 else (SLICE, 2)
            outcome = client.match(environment, kind, gpu)
            tally.add(outcome)
            if outcome.code == OK:
                released = client.release(environment, tally)
                assert outcome.allocation and released["id"] == outcome.allocation["id"]

    workers = [lambda c=pool[n], n=n: hold(c, n) for n in range(holders)]
    workers += [lambda c=pool[holders + n], n=n: cycle(c, n) for n in range(cyclers)]
    elapsed = race(workers)
    print("\n" + tally.summary(f"{backend(database_url)} interleaved releases", elapsed))

    assert set(tally.codes()) <= ACCEPTABLE
    ledger = check_invariants(db)
    assert_active_are_the_kept_ones(ledger, kept)
    with db() as session:  # every cycler's allocations were all released
        cycled = session.scalars(
            select(AllocationRow).where(AllocationRow.environment.like("cycler-%"))
        )
        assert all(a.released_at is not None for a in cycled)
    fill_up(clients(2), ledger, "after")
    assert check_invariants(db).free_gpus == 0


# --- two real server processes on one PostgreSQL ----------------------------------------


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def _gpuinv(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([GPUINV, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"gpuinv {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def _wait_healthy(served: list[Served]) -> None:
    deadline = time.monotonic() + 60
    for one in served:
        while True:
            assert one.process.poll() is None, f"server exited:\n{one.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{one.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"{one.url} not healthy after 60 s"
            time.sleep(0.1)  # polling for start-up, not synchronisation between clients


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[tuple[list[Served], str, str]]:
    url, drop = fresh_postgres_database("gpuinv_race")
    env = os.environ | {"GPUINV_DATABASE_URL": url, "GPUINV_LEASE_SWEEP_SECONDS": "3600"}
    served: list[Served] = []
    try:
        _gpuinv(["db", "upgrade"], env)  # migrate once, before the replicas start
        token = _gpuinv(["token", "create", "--role", "platform-admin"], env).strip()
        for n in range(2):
            port = free_port()
            log = tmp_path / f"server-{n}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [GPUINV, "serve", "--port", str(port), "--log-level", "warning"],
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                )
            served.append(Served(f"http://127.0.0.1:{port}", process, log))
        _wait_healthy(served)
        yield served, token, url
    finally:
        for one in served:
            if one.process.poll() is None:
                one.process.send_signal(signal.SIGINT)
        for one in served:
            try:
                one.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                one.process.kill()
                one.process.wait(timeout=10)
        drop()


@pytest.mark.postgres_only
def test_two_server_processes_on_postgresql_never_overallocate_under_mixed_racing_load(
    two_processes: tuple[list[Served], str, str],
) -> None:
    served, token, url = two_processes
    servers = 8  # 64 GPUs
    import_fleet(served[0].url, token, [gpu_server(f"gpu-{n}") for n in range(servers)])
    whole_holders, slice_holders, cyclers, rounds = 8, 8, 8, 6
    callers = whole_holders + slice_holders + cyclers
    pool = [Client(served[n % 2].url, token) for n in range(callers)]
    tally = Tally()
    kept: list[Outcome] = []
    kept_lock = threading.Lock()

    def hold(client: Client, name: str, kind: str, gpu: int) -> None:
        outcome = client.match(name, kind, gpu, cpu=8 * gpu if kind == SLICE else 0)
        tally.add(outcome)
        if outcome.code == OK:
            with kept_lock:
                kept.append(outcome)

    def cycle(client: Client, n: int) -> None:
        environment = f"cycler-{n}"
        for loop in range(rounds):
            kind, gpu = (WHOLE, 8) if (n + loop) % 3 == 0 else (SLICE, 1 + (n + loop) % 4)
            outcome = client.match(environment, kind, gpu)
            tally.add(outcome)
            if outcome.code == OK:
                released = client.release(environment, tally)
                assert outcome.allocation and released["id"] == outcome.allocation["id"]

    # 8 whole nodes (64 GPUs) + slices of 1..4 GPUs (20 GPUs) + the cyclers, on 64 GPUs.
    workers = [lambda c=pool[n], n=n: hold(c, f"whole-{n}", WHOLE, 8) for n in range(whole_holders)]
    workers += [
        lambda c=pool[whole_holders + n], n=n: hold(c, f"slice-{n}", SLICE, 1 + n % 4)
        for n in range(slice_holders)
    ]
    workers += [
        lambda c=pool[whole_holders + slice_holders + n], n=n: cycle(c, n) for n in range(cyclers)
    ]
    engine = make_engine(url)
    try:
        elapsed = race(workers)
        print("\n" + tally.summary("postgresql, 2 processes", elapsed))
        assert set(tally.codes()) <= ACCEPTABLE
        sessions = session_factory(engine)
        ledger = check_invariants(sessions)
        assert_active_are_the_kept_ones(ledger, kept)
        granted = sum(8 if o.kind == WHOLE else o.gpu for o in kept)
        assert granted + ledger.free_gpus == servers * 8
        fill_up(pool[:2], ledger, "after")  # one client on each process
        assert check_invariants(sessions).free_gpus == 0
    finally:
        for client in pool:
            client.close()
        engine.dispose()
