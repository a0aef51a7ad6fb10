"""Quotas under racing clients and under a long random stream: the usage counters never
pass a limit, and they always equal what the active allocations hold (DESIGN.md "Sharing
the fleet", **Quotas**).

The counters (table ``quota``) are checked against a recount made here from the tables
the claims write: every active allocation of a tenant, the devices it holds (whole or a
slice) and those devices' GPUs, per (tenant, project, GPU model): the GPUs of the
allocations that did not borrow, the GPUs of those that did, and the whole baremetal
nodes. Each allocation's ``counted`` (what its release takes back) is checked against the
same recount.

1. Racing clients, two ``gpuinv serve`` processes on one PostgreSQL: 16 threads released
   together claim whole nodes and 1/2/4-GPU slices (some preemptible, some in a project)
   against tenant, model and project quotas on a fleet far larger than them, and release
   some of what they got. Two samplers read the counters meanwhile (``quotas`` through the
   API, and the table directly): no sample may show a limit passed. A second round, after
   a second barrier, only claims: usage then only grows, so a refusal proves its limit
   was full (within that claim's size) for good, which the end state must show. Then the
   remaining room is taken one claim at a time and must be exactly what the counters
   said, and racing releases of everything must bring every counter back to zero.
2. A seeded random stream on both backends: claims (whole nodes, slices, VMs; projects;
   preemptible; leases that expire while the stream runs, through a second replica that
   sweeps every second; dry runs), releases, and quota changes (raised, lowered below
   usage, deleted, project quotas, model quotas spelt oddly), alternating between two
   replicas. Each claim is judged against the ``quotas`` read just before and after it
   (a refusal names a limit as set and a usage it would have passed; a claim that did not
   borrow leaves every limit it counts against kept; a borrowed one was preemptible and
   did not fit); every few steps, and at the end, the counters must equal the recount,
   and releasing everything must bring them back to zero.

These tests found two bugs, since fixed (``no_internal_errors_nor_stale_borrowing``): on
PostgreSQL a claim and a release could deadlock, answered INTERNAL_SERVER_ERROR; and a
preemptible claim that fitted could be counted as borrowed, on limits read up to a second
before. Either fails them again.

Run with ``-s`` to see the figures (answers by code, borrowed claims, releases, samples,
wall time).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session, sessionmaker

from api.db.models import (
    AllocationDeviceRow,
    AllocationRow,
    DeviceRow,
    GpuRow,
    ProjectRow,
    QuotaRow,
    TenantRow,
)
from api.db.session import make_engine, session_factory, upgrade_to_head
from api.settings import Settings
from tests.support.api import TOKEN_CACHE_SECONDS, Api, make_tenant, make_token
from tests.support.database import fresh_postgres_database
from tests.support.processes import serving
from tests.support.race import race
from tests.support.server import ServerThread

HTTP_TIMEOUT = 60.0
JOIN_TIMEOUT = 120.0

H100, A100 = "H100-SXM5-80GB", "A100-SXM4-80GB"
WHOLE, SLICE, VM = "baremetal", "vcluster", "vm"
OK, QUOTA_EXCEEDED, NO_MATCH = "OK", "QUOTA_EXCEEDED", "NO_MATCH"
CONCURRENT_UPDATE, INTERNAL = "CONCURRENT_UPDATE", "INTERNAL_SERVER_ERROR"
ACCEPTABLE = {OK, QUOTA_EXCEEDED, NO_MATCH, CONCURRENT_UPDATE}

MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
  allocation { id environment preemptible borrowed expiresAt
               devices { deviceId hostname exclusive gpus } }
  claimAttempts } }"""
RELEASE = """mutation($e: String!, $t: String) {
  releaseAllocation(environment: $e, tenant: $t) { id releasedAt } }"""
QUOTAS = """query($t: String) { quotas(tenant: $t) {
  tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus } }"""
SET = """mutation($i: QuotaInput!) { setQuota(input: $i) {
  tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus } }"""
DELETE = """mutation($t: String!, $p: String, $m: String) {
  deleteQuota(tenant: $t, project: $p, gpuModel: $m) { tenant project gpuModel gpus nodes } }"""
IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
CONFIG = json.dumps(
    [
        {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        {"type": "match", "keyInVariable": "model", "keyInDevice": "gpus.modelNo"},
    ]
)


def model_key(model: str | None) -> str:
    """A GPU model as quotas compare it (DESIGN.md: trimmed, case-insensitive)."""
    return (model or "").strip().casefold()


def gpu_server(hostname: str, model: str, gpus: int = 8) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "totalcpu": 64,
        "totalmemoryMB": 262144,
        "totalstorageGB": 4000,
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": model}] * gpus,
    }


def gpu_vm(hostname: str, model: str, gpus: int = 2) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "totalcpu": 16,
        "totalmemoryMB": 65536,
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": model}] * gpus,
    }


# --- asking and answering ----------------------------------------------------------------


@dataclass(frozen=True)
class Ask:
    """One matchDevice request."""

    environment: str
    kind: str  # WHOLE, SLICE or VM
    gpus: int
    models: tuple[str, ...]
    project: str | None = None
    preemptible: bool = False
    ttl: int | None = None
    dry_run: bool = False

    def given(self, tenant: str | None) -> dict[str, Any]:
        given: dict[str, Any] = {
            "environment": self.environment,
            "labels": {
                "paas.envmgmt.io/inventory": self.kind,
                "paas.envmgmt.io/inventory.config": CONFIG,
            },
            "variables": {"gpu": self.gpus, "model": list(self.models)},
            "preemptible": self.preemptible,
        }
        for name, value in (
            ("tenant", tenant),
            ("project", self.project),
            ("ttlSeconds", self.ttl),
        ):
            if value is not None:
                given[name] = value
        if self.dry_run:
            given["dryRun"] = True
        return given


@dataclass
class Answer:
    ask: Ask
    tenant: str
    code: str  # OK, or the error's extensions.code
    allocation: dict[str, Any] | None = None
    quota: dict[str, Any] | None = None  # extensions.quota of a QUOTA_EXCEEDED
    message: str = ""
    attempts: int = 0
    phase: str = ""


def _body(response: httpx.Response) -> dict[str, Any]:
    """The GraphQL body; an answer that is not one (a 500 with no JSON) as an error."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        code = f"HTTP {response.status_code}"
        return {"errors": [{"message": response.text[:500], "extensions": {"code": code}}]}
    return body


class Caller:
    """One client with its own connection, pointed at one server, acting for ``tenant``
    (a tenant's provisioner; or a platform admin, who names the tenant in each request)."""

    def __init__(self, url: str, token: str, tenant: str, as_admin: bool = False):
        self.url, self.tenant, self.as_admin = url, tenant, as_admin
        self.internal: list[str] = []  # releases answered INTERNAL_SERVER_ERROR (retried)
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT
        )

    def close(self) -> None:
        self.http.close()

    def post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return _body(self.http.post("/graphql", json={"query": query, "variables": variables}))

    def match(self, ask: Ask) -> Answer:
        body = self.post(MATCH, {"i": ask.given(self.tenant if self.as_admin else None)})
        if body.get("errors"):
            error = body["errors"][0]
            extensions = error.get("extensions") or {}
            return Answer(
                ask,
                self.tenant,
                extensions.get("code", "?"),
                quota=extensions.get("quota"),
                message=error.get("message", ""),
            )
        result = body["data"]["matchDevice"]
        return Answer(ask, self.tenant, OK, result["allocation"], attempts=result["claimAttempts"])

    def release(self, environment: str) -> dict[str, Any]:
        """Release; retried on CONCURRENT_UPDATE, as a client would, and on
        INTERNAL_SERVER_ERROR, which is noted (see ``settle_known_bugs``)."""
        for _ in range(20):
            body = self.post(
                RELEASE, {"e": environment, "t": self.tenant if self.as_admin else None}
            )
            errors = body.get("errors")
            code = (errors[0].get("extensions") or {}).get("code") if errors else None
            if code == INTERNAL:
                self.internal.append(f"releaseAllocation {environment}: {errors}")
            if code in (CONCURRENT_UPDATE, INTERNAL):
                continue
            assert not errors, f"releaseAllocation {environment}: {errors}"
            released = body["data"]["releaseAllocation"]
            assert released is not None and released["releasedAt"], (environment, released)
            return released
        raise AssertionError(f"releaseAllocation {environment}: refused 20 times")


def no_internal_errors_nor_stale_borrowing(
    where: str, internal: list[str], logged: list[str], fitted_yet_borrowed: Sequence[str] = ()
) -> None:
    """What this file found once, and must never see again (each fixed with a test of its
    own, tests/integration/test_quota_lock_order.py and tests/api/test_quota.py):

    1. A deadlock (PostgreSQL) between a claim (its device, then the quota counters) and a
       release (the counters, then the device), answered INTERNAL_SERVER_ERROR.
    2. A preemptible claim that fitted within its quotas counted as borrowed, because the
       limits and usage read up to a second before said it would not fit.
    """
    assert not internal, f"{where}: INTERNAL_SERVER_ERROR answers:\n" + "\n".join(
        [*internal[:5], *(line[:2000] for line in logged[:3])]
    )
    assert not fitted_yet_borrowed, (
        f"{where}: {len(fitted_yet_borrowed)} preemptible claim(s) counted as borrowed "
        f"although they fitted, e.g. {fitted_yet_borrowed[0]}"
    )


def logged_internal_errors(lines: list[str]) -> list[str]:
    """The server's log lines of requests that failed inside (api/graphql/schema.py)."""
    return [line for line in lines if "unexpected error in" in line]


# --- the database's own account -----------------------------------------------------------

# A counter's key: tenant slug, project slug (None: the tenant's own), model key ("": all).
Key = tuple[str, str | None, str]
Usage = tuple[int, int, int]  # used GPUs, used (whole) nodes, borrowed GPUs
ZERO: Usage = (0, 0, 0)


@dataclass
class Account:
    """What the tables say, read in one snapshot."""

    counters: dict[Key, Usage]  # the quota table's counters, every row
    limits: dict[Key, tuple[int | None, int | None]]  # the enforced rows' gpus and nodes
    recounted: dict[Key, Usage]  # the same, recounted from the active allocations
    active: dict[str, dict[str, Any]]  # active tenant allocation id -> a few of its columns
    problems: list[str] = field(default_factory=list)

    def mismatches(self) -> list[str]:
        return [
            f"{key}: counters (used, nodes, borrowed) {self.counters.get(key, ZERO)}, "
            f"active allocations hold {self.recounted.get(key, ZERO)}"
            for key in sorted(self.counters.keys() | self.recounted.keys(), key=str)
            if self.counters.get(key, ZERO) != self.recounted.get(key, ZERO)
        ]

    def check(self, when: str) -> None:
        wrong = self.problems + self.mismatches()
        assert not wrong, f"{when}: the quota counters disagree with the tables:\n" + "\n".join(
            wrong
        )

    def over_limits(self) -> list[str]:
        """Enforced counters beyond their limits (usage never passes a limit while limits
        are only ever set above usage)."""
        over = []
        for key, (gpus, nodes) in self.limits.items():
            used, used_nodes, _ = self.counters.get(key, ZERO)
            if (gpus is not None and used > gpus) or (nodes is not None and used_nodes > nodes):
                over.append(f"{key}: holds {used} GPUs, {used_nodes} nodes; limits {gpus}, {nodes}")
        return over


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One consistent read of several tables (REPEATABLE READ on PostgreSQL; on SQLite a
    read transaction sees one snapshot of the WAL)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def account(engine: Engine) -> Account:
    allocation, held = AllocationRow.__table__.c, AllocationDeviceRow.__table__.c
    device, gpu = DeviceRow.__table__.c, GpuRow.__table__.c
    with snapshot(engine) as connection:
        tenants = dict(connection.execute(select(TenantRow.id, TenantRow.slug)).all())
        projects = dict(connection.execute(select(ProjectRow.id, ProjectRow.slug)).all())
        quotas = connection.execute(select(QuotaRow.__table__)).all()
        allocations = connection.execute(
            select(
                allocation.id,
                allocation.environment,
                allocation.tenant_id,
                allocation.project_id,
                allocation.borrowed,
                allocation.preemptible,
                allocation.counted,
                allocation.inventory_type,
            ).where(allocation.released_at.is_(None), allocation.tenant_id.is_not(None))
        ).all()
        rows = connection.execute(
            select(held.allocation_id, held.device_id, held.exclusive, held.gpus).where(
                held.active.is_(True)
            )
        ).all()
        devices = {
            d.id: d
            for d in connection.execute(
                select(device.id, device.hostname, device.kind, device.total_gpus)
            )
        }
        models: dict[str, list[str]] = {}
        for device_id, model in connection.execute(select(gpu.device_id, gpu.model_no)):
            models.setdefault(device_id, []).append(model_key(model))
        platform_wide = set(
            connection.execute(
                select(allocation.id).where(
                    allocation.released_at.is_(None), allocation.tenant_id.is_(None)
                )
            ).scalars()
        )

    def key_of(tenant_id: str, project_key: str, model: str) -> Key:
        return (tenants[tenant_id], projects[project_key] if project_key else None, model)

    problems: list[str] = []
    counters: dict[Key, Usage] = {}
    limits: dict[Key, tuple[int | None, int | None]] = {}
    for row in quotas:
        key = key_of(row.tenant_id, row.project_key, row.model_key)
        counters[key] = (row.used_gpus, row.used_nodes, row.borrowed_gpus)
        if min(counters[key]) < 0:
            problems.append(f"{key}: a negative counter {counters[key]}")
        if row.enforced:
            limits[key] = (row.gpus, row.nodes)
    holding: dict[str, list[Any]] = {a.id: [] for a in allocations}
    for row in rows:
        if row.allocation_id in holding:
            holding[row.allocation_id].append(row)
        elif row.allocation_id not in platform_wide:
            problems.append(f"a released allocation {row.allocation_id} still holds a device")
    recounted: dict[Key, Usage] = {}
    for a in allocations:
        if not holding[a.id]:
            problems.append(f"active allocation {a.environment} holds no device")
        gpus, nodes = 0, 0
        by_model: Counter[str] = Counter()
        nodes_by_model: Counter[str] = Counter()
        for row in holding[a.id]:
            d = devices[row.device_id]
            on_device = models.get(d.id, [])
            if row.exclusive:  # a whole device: all its GPUs, one node if baremetal
                if row.gpus != d.total_gpus:
                    problems.append(f"{a.environment}: holds {d.hostname} whole with {row.gpus}")
                node = 1 if d.kind == "baremetal" else 0
                gpus, nodes = gpus + d.total_gpus, nodes + node
                for model, count in Counter(on_device).items():
                    by_model[model] += count
                    nodes_by_model[model] += node
            else:  # a slice of a one-model host: its GPUs, of that model
                if len(set(on_device)) != 1:
                    problems.append(f"{a.environment}: a slice of mixed host {d.hostname}")
                    continue
                gpus += row.gpus
                by_model[on_device[0]] += row.gpus
        counts: list[tuple[str | None, str, int, int]] = []
        for project in [None, *([projects[a.project_id]] if a.project_id else [])]:
            for model in ["", *sorted(by_model.keys() | nodes_by_model.keys())]:
                g = gpus if not model else by_model[model]
                n = nodes if not model else nodes_by_model[model]
                counts.append((project, model, g, n))
                key = (tenants[a.tenant_id], project, model)
                used, used_nodes, borrowed = recounted.get(key, ZERO)
                recounted[key] = (
                    used + (0 if a.borrowed else g),
                    used_nodes + n,
                    borrowed + (g if a.borrowed else 0),
                )
        recorded = [(projects[p] if p else None, m, g, n) for p, m, g, n in (a.counted or [])]
        if Counter(recorded) != Counter(counts):
            problems.append(f"{a.environment}: counted {recorded}, holds {counts}")
    active = {a.id: a._asdict() for a in allocations}
    return Account(counters, limits, recounted, active, problems)


def eventually_no_lease(engine: Engine, seconds: float) -> None:
    """Wait until the sweeper has released every allocation whose lease ran out."""
    allocation = AllocationRow.__table__.c
    deadline = time.monotonic() + seconds
    while True:
        with engine.connect() as connection:
            leased = connection.execute(
                select(allocation.id).where(
                    allocation.released_at.is_(None), allocation.expires_at.is_not(None)
                )
            ).all()
        if not leased:
            return
        assert time.monotonic() < deadline, f"{len(leased)} leases not released after {seconds}s"
        time.sleep(0.2)  # polling the background sweeper, not synchronising clients


# --- 1. racing clients, two server processes, one PostgreSQL -----------------------------

# Limits, by counter key: (gpus, nodes).
RACE_LIMITS: dict[Key, tuple[int | None, int | None]] = {
    ("acme", None, ""): (64, 6),
    ("acme", None, model_key(H100)): (40, None),
    ("acme", "llm", ""): (24, 2),
    ("acme", "llm", model_key(H100)): (16, None),
    ("globex", None, ""): (16, 1),
}
RACE_H100, RACE_A100 = 32, 12  # servers of 8 GPUs: 352 GPUs, against 80 of quotas
ACME_CALLERS, GLOBEX_CALLERS = 14, 2
ROUND_A, ROUND_B = 6, 4  # claims per client: with releases; then claims only


def _race_ask(rng: random.Random, environment: str, projects: tuple[str, ...]) -> Ask:
    kind = WHOLE if rng.random() < 0.3 else SLICE
    return Ask(
        environment,
        kind,
        8 if kind == WHOLE else rng.choice([1, 2, 4]),
        rng.choice([(H100,), (A100,), (H100, A100)]),
        project=rng.choice([None, *projects]),
        preemptible=rng.random() < 0.25,
    )


@dataclass
class Record:
    """What every client saw, from all threads."""

    answers: list[Answer] = field(default_factory=list)
    released: dict[str, str] = field(default_factory=dict)  # allocation id -> environment
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: Answer) -> None:
        with self.lock:
            self.answers.append(answer)

    def release(self, allocation_id: str, environment: str) -> None:
        with self.lock:
            self.released[allocation_id] = environment

    def codes(self, phase: str | None = None) -> Counter[str]:
        return Counter(a.code for a in self.answers if phase in (None, a.phase))

    def kept(self) -> dict[str, Answer]:
        return {
            a.allocation["id"]: a
            for a in self.answers
            if a.allocation is not None and a.allocation["id"] not in self.released
        }


class Sampler:
    """Reads the counters over and over in a thread of its own until stopped; every
    reading must show each enforced counter within its limits."""

    def __init__(self, name: str, read: Callable[[], list[tuple[Key, Any, Any, int, int]]]):
        self.name, self.read = name, read
        self.samples, self.violations, self.errors = 0, [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                readings = self.read()
            except Exception as exc:  # reported by the test
                self.errors.append(repr(exc))
                return
            self.samples += 1
            for key, gpus, nodes, used, used_nodes in readings:
                if (gpus is not None and used > gpus) or (nodes is not None and used_nodes > nodes):
                    self.violations.append(f"{key}: {used}/{gpus} GPUs, {used_nodes}/{nodes} nodes")
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def _quotas_through(callers: list[Caller]) -> Callable[[], list[tuple[Key, Any, Any, int, int]]]:
    turn = iter(range(10**9))

    def read() -> list[tuple[Key, Any, Any, int, int]]:
        body = callers[next(turn) % len(callers)].post(QUOTAS, {})
        assert not body.get("errors"), body["errors"]
        return [
            (
                (q["tenant"], q["project"], model_key(q["gpuModel"])),
                q["gpus"],
                q["nodes"],
                q["usedGpus"],
                q["usedNodes"],
            )
            for q in body["data"]["quotas"]
        ]

    return read


def _quotas_in(engine: Engine) -> Callable[[], list[tuple[Key, Any, Any, int, int]]]:
    quota = QuotaRow.__table__.c

    def read() -> list[tuple[Key, Any, Any, int, int]]:
        with engine.connect() as connection:
            rows = connection.execute(
                select(
                    quota.tenant_id,
                    quota.project_key,
                    quota.model_key,
                    quota.gpus,
                    quota.nodes,
                    quota.used_gpus,
                    quota.used_nodes,
                ).where(quota.enforced)
            ).all()
        return [((r[0], r[1], r[2]), r[3], r[4], r[5], r[6]) for r in rows]

    return read


def _check_refusal(answer: Answer, limits: dict[Key, tuple[int | None, int | None]]) -> None:
    """A QUOTA_EXCEEDED names a limit the claim was under, as set, and a usage within it
    that the claim would have passed; a preemptible claim is refused for nodes alone."""
    q = answer.quota
    assert q is not None, f"QUOTA_EXCEEDED without extensions.quota: {answer}"
    key = (q["tenant"], q["project"], model_key(q["gpuModel"]))
    assert q["tenant"] == answer.tenant and q["project"] in (None, answer.ask.project), q
    assert key in limits, f"refused by a limit that is not set: {q}"
    assert q["limit"] == limits[key][0 if q["resource"] == "gpus" else 1], (q, limits[key])
    assert 0 <= q["used"] <= q["limit"] < q["used"] + q["requested"], q
    if answer.ask.preemptible:
        assert q["resource"] == "nodes", f"a preemptible claim refused for GPUs: {q}"


@pytest.mark.postgres_only
def test_racing_claims_on_two_server_processes_never_pass_a_quota_and_counters_stay_exact(
    tmp_path: Path,
) -> None:
    url, drop = fresh_postgres_database("gpuinv_quota_race")
    engine = make_engine(url)
    callers: list[Caller] = []
    try:
        upgrade_to_head(engine)  # once, before the two processes start
        sessions = session_factory(engine)
        make_tenant(sessions, "acme", "llm", "vision")
        make_tenant(sessions, "globex")
        admin_token = make_token(sessions, "platform-admin")
        tokens = {t: make_token(sessions, "provisioner", t) for t in ("acme", "globex")}
        with ExitStack() as stack:
            served = [
                stack.enter_context(serving(url, tmp_path, "--log-level", "warning"))
                for _ in range(2)
            ]
            internal = _race_on([u for u, _ in served], engine, admin_token, tokens, callers)
        logged = [line for _, log in served for line in log.read_text().splitlines()]
        no_internal_errors_nor_stale_borrowing(
            "the quota race", internal, logged_internal_errors(logged)
        )
    finally:
        for caller in callers:
            caller.close()
        engine.dispose()
        drop()


def _race_on(
    urls: list[str],
    engine: Engine,
    admin_token: str,
    tokens: dict[str, str],
    callers: list[Caller],
) -> list[str]:
    """The race and every check; the requests answered INTERNAL_SERVER_ERROR."""
    admin = Api(urls[0], admin_token)
    fleet = [gpu_server(f"h100-{n:02}", H100) for n in range(RACE_H100)]
    fleet += [gpu_server(f"a100-{n:02}", A100) for n in range(RACE_A100)]
    imported = admin.ok(IMPORT, d=json.dumps({"devices": fleet}))["importInventory"]
    assert imported["created"] == len(fleet)
    for (tenant, project, model), (gpus, nodes) in RACE_LIMITS.items():
        given = {"tenant": tenant, "project": project, "gpus": gpus, "nodes": nodes}
        admin.ok(SET, i=given | ({"gpuModel": " h100-sxm5-80GB "} if model else {}))

    # 14 acme clients (4 of them a platform admin naming the tenant), 2 globex; both servers.
    clients = [
        Caller(urls[n % 2], admin_token, "acme", as_admin=True)
        if n % 4 == 3
        else Caller(urls[n % 2], tokens["acme"], "acme")
        for n in range(ACME_CALLERS)
    ]
    clients += [Caller(urls[n % 2], tokens["globex"], "globex") for n in range(GLOBEX_CALLERS)]
    samplers = [Caller(url, admin_token, "acme", as_admin=True) for url in urls]
    callers += clients + samplers
    record = Record()
    between = threading.Barrier(len(clients))  # round A done by everyone before round B

    def client(n: int, caller: Caller) -> None:
        rng = random.Random(1000 + n)
        projects = ("llm", "vision") if caller.tenant == "acme" else ()
        held: list[Answer] = []
        for i in range(ROUND_A):
            answer = caller.match(_race_ask(rng, f"c{n}-a{i}", projects))
            answer.phase = "A"
            record.add(answer)
            if answer.allocation is not None:
                held.append(answer)
            if held and rng.random() < 0.5:
                let_go = held.pop(rng.randrange(len(held)))
                assert let_go.allocation is not None
                released = caller.release(let_go.ask.environment)
                assert released["id"] == let_go.allocation["id"]
                record.release(released["id"], let_go.ask.environment)
        between.wait(timeout=60)
        for i in range(ROUND_B):  # no releases: usage only grows from here on
            answer = caller.match(_race_ask(rng, f"c{n}-b{i}", projects))
            answer.phase = "B"
            record.add(answer)

    workers = [lambda n=n, c=c: client(n, c) for n, c in enumerate(clients)]
    with (
        Sampler("api", _quotas_through(samplers)) as api_sampler,
        Sampler("db", _quotas_in(engine)) as db_sampler,
    ):
        elapsed = race(workers, [between], join_timeout=JOIN_TIMEOUT)
    codes = record.codes()
    borrowed = sum(1 for a in record.answers if a.allocation and a.allocation["borrowed"])
    retried = sum(1 for a in record.answers if a.attempts > 1)
    print(
        f"\n[quota race, postgresql, 2 processes] {len(record.answers)} claims by "
        f"{len(clients)} clients, {len(record.released)} releases in {elapsed:.2f}s: "
        f"{dict(sorted(codes.items()))} (round A {dict(record.codes('A'))}, round B "
        f"{dict(record.codes('B'))}); {borrowed} borrowed, {retried} retried claims, "
        f"{sum(len(c.internal) for c in clients)} releases answered {INTERNAL} (retried); "
        f"samples: {api_sampler.samples} through quotas, {db_sampler.samples} from the table"
    )

    # Every answer is one a client can act on; nothing failed inside.
    unexpected = [
        f"{a.ask.environment}: {a.code} {a.message}"
        for a in record.answers
        if a.code not in ACCEPTABLE | {INTERNAL}  # INTERNAL: settled last, by the caller
    ]
    assert not unexpected, f"{len(unexpected)} unexpected answers:\n" + "\n".join(unexpected[:10])
    assert codes[OK] and record.codes("B")[QUOTA_EXCEEDED], "the race did not fill the quotas"
    # (a) No reading, through the API or from the table, ever showed a limit passed.
    for sampler in (api_sampler, db_sampler):
        assert not sampler.errors, f"{sampler.name} sampler: {sampler.errors}"
        assert sampler.samples > 0
        assert not sampler.violations, f"{sampler.name} sampler saw limits passed:\n" + "\n".join(
            sampler.violations[:10]
        )
    # (b) The counters are exactly what the active allocations hold, within every limit.
    end = account(engine)
    end.check("after the race")
    assert end.limits == RACE_LIMITS
    assert not end.over_limits(), end.over_limits()
    kept = record.kept()
    assert set(end.active) == set(kept), "the active allocations are not the ones kept"
    for allocation_id, answer in kept.items():
        assert answer.allocation is not None
        assert end.active[allocation_id]["borrowed"] == answer.allocation["borrowed"]
        # Borrowing is what a preemptible claim beyond a GPU limit does, and only that.
        assert answer.ask.preemptible or not answer.allocation["borrowed"], answer
    # (c) A refusal names a limit the claim would have passed. In round B usage only grew,
    # so what was full then is full now, to within that claim's size.
    refused = [a for a in record.answers if a.code == QUOTA_EXCEEDED]
    for answer in refused:
        _check_refusal(answer, RACE_LIMITS)
    for answer in (a for a in refused if a.phase == "B"):
        q = answer.quota
        assert q is not None
        key = (q["tenant"], q["project"], model_key(q["gpuModel"]))
        now = end.counters[key][0 if q["resource"] == "gpus" else 1]
        assert now + q["requested"] > q["limit"], f"refused, yet {now} of {q} is held now"

    # The room the counters leave is exactly what can still be claimed: release every
    # other allocation acme kept, then take whole nodes, then single GPUs, one request at
    # a time (alternating processes), for acme outside projects, until refused.
    filler = [Caller(url, tokens["acme"], "acme") for url in urls]
    callers += filler
    acme_kept = sorted(a.ask.environment for a in kept.values() if a.tenant == "acme")
    for n, environment in enumerate(acme_kept[::2]):
        filler[n % 2].release(environment)
    freed = account(engine)
    freed.check("after releasing half of acme's allocations")
    _, nodes_before, _ = freed.counters[("acme", None, "")]
    taken_whole, last = _take_until_refused(filler, "fill-whole", WHOLE, 8)
    _check_refusal(last, RACE_LIMITS)
    after_whole = account(engine)
    after_whole.check("after the whole nodes")
    q = last.quota
    assert q is not None
    key = (q["tenant"], q["project"], model_key(q["gpuModel"]))
    assert (
        after_whole.counters[key][0 if q["resource"] == "gpus" else 1] + q["requested"] > q["limit"]
    ), q
    room = 64 - after_whole.counters[("acme", None, "")][0]
    taken_slices, last = _take_until_refused(filler, "fill-slice", SLICE, 1)
    _check_refusal(last, RACE_LIMITS)
    assert last.quota is not None and last.quota["project"] is None, last.quota
    assert (last.quota["gpuModel"], last.quota["resource"]) == (None, "gpus"), last.quota
    assert taken_slices == room, f"{taken_slices} GPUs taken one by one, the counters left {room}"
    full = account(engine)
    full.check("after filling the quota")
    used, used_nodes, _ = full.counters[("acme", None, "")]
    assert used == 64 and used_nodes == nodes_before + taken_whole <= 6
    print(
        f"[quota race] {len(acme_kept[::2])} of acme's allocations released, then "
        f"{taken_whole} whole nodes and {taken_slices} single GPUs filled acme to {used}/64 "
        f"GPUs, {used_nodes}/6 nodes"
    )

    # Racing releases of everything, on both processes, give every counter back to zero.
    everything = [(a["environment"], a["tenant_id"]) for a in full.active.values()]
    tenants = _tenant_slugs(engine)
    releasers = [
        Caller(urls[n % 2], admin_token, "", as_admin=True) for n in range(8)
    ]  # tenant set per release below
    callers += releasers

    def release_share(n: int) -> None:
        for environment, tenant_id in everything[n :: len(releasers)]:
            releasers[n].tenant = tenants[tenant_id]
            releasers[n].release(environment)

    elapsed = race(
        [lambda n=n: release_share(n) for n in range(len(releasers))], join_timeout=JOIN_TIMEOUT
    )
    empty = account(engine)
    empty.check("after releasing everything")
    assert not empty.active
    assert all(usage == ZERO for usage in empty.counters.values()), empty.counters
    print(f"[quota race] {len(everything)} racing releases in {elapsed:.2f}s: every counter 0")
    internal = [f"matchDevice {a.ask.environment}" for a in record.answers if a.code == INTERNAL]
    return internal + [failure for caller in callers for failure in caller.internal]


def _tenant_slugs(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        return {i: slug for i, slug in connection.execute(select(TenantRow.id, TenantRow.slug))}


def _take_until_refused(
    callers: list[Caller], prefix: str, kind: str, gpus: int
) -> tuple[int, Answer]:
    """Claim (outside projects, any model) until refused; how many, and the refusal."""
    for taken in range(1000):
        ask = Ask(f"{prefix}-{taken}", kind, gpus, (H100, A100))
        answer = callers[taken % len(callers)].match(ask)
        if answer.code != OK:
            assert answer.code == QUOTA_EXCEEDED, f"{ask.environment}: {answer}"
            return taken, answer
        assert answer.allocation is not None and not answer.allocation["borrowed"]
    raise AssertionError("never refused")


# --- 2. a random stream, both backends ----------------------------------------------------

STEPS = 300
CHECK_EVERY = 20
PROJECTS = ("llm", "vision")
# The quotas the stream sets and lifts: (project, model as the stream spells it).
TARGETS: list[tuple[str | None, str | None]] = [
    (None, None),
    (None, H100),
    (None, " a100-sxm4-80gb "),
    ("llm", None),
    ("llm", "h100-SXM5-80gb"),
    ("vision", None),
]
STREAM_H100, STREAM_A100, STREAM_VMS = 10, 6, 4
HOST_MODEL = {"h100": model_key(H100), "a100": model_key(A100), "vm": model_key(H100)}

Limits = dict[tuple[str | None, str], tuple[int | None, int | None]]  # (project, model key)
Listing = dict[tuple[str | None, str], dict[str, Any]]


@dataclass
class Stream:
    """The stream's own account: what it holds and the limits it set."""

    api: Api  # platform admin
    callers: list[Caller]
    limits: Limits = field(default_factory=dict)
    held: dict[str, str] = field(default_factory=dict)  # environment -> allocation id
    leased: set[str] = field(default_factory=set)  # the environments held on a lease
    fitted_yet_borrowed: list[str] = field(default_factory=list)  # see settle_known_bugs
    figures: Counter[str] = field(default_factory=Counter)

    def listing(self) -> Listing:
        """acme's quotas as ``quotas`` lists them; their limits must be the ones set."""
        quotas = self.api.ok(QUOTAS, t="acme")["quotas"]
        listed = {(q["project"], model_key(q["gpuModel"])): q for q in quotas}
        assert len(listed) == len(quotas), quotas
        assert {k: (q["gpus"], q["nodes"]) for k, q in listed.items()} == self.limits, (
            "quotas lists other limits than were set"
        )
        return listed


def _stream_ask(rng: random.Random, step: int) -> Ask:
    roll = rng.random()
    kind = WHOLE if roll < 0.3 else VM if roll < 0.4 else SLICE
    gpus = {WHOLE: 8, VM: 2}.get(kind) or rng.choice([1, 2, 4, 8])
    models = (H100,) if kind == VM else rng.choice([(H100,), (A100,), (H100, A100)])
    return Ask(
        f"s{step}",
        kind,
        gpus,
        models,
        project=rng.choice([None, None, *PROJECTS]),
        preemptible=rng.random() < 0.25,
        ttl=rng.choice([1, 2, 3]) if rng.random() < 0.2 else None,
        dry_run=rng.random() < 0.05,
    )


def _counted_keys(answer: Answer) -> tuple[list[tuple[str | None, str]], int, int]:
    """The quota keys an allocated claim counts against, with its GPUs and whole nodes."""
    assert answer.allocation is not None
    [device] = answer.allocation["devices"]  # every request here is for one node
    model = HOST_MODEL[device["hostname"].split("-")[0]]
    nodes = 1 if answer.ask.kind == WHOLE else 0
    projects = [None, *([answer.ask.project] if answer.ask.project else [])]
    return [(p, m) for p in projects for m in ("", model)], device["gpus"], nodes


def _judge_claim(answer: Answer, before: Listing, after: Listing, limits: Limits) -> bool:
    """A claim against the quotas read just before and just after it. Nothing else runs
    but the lease sweeper, which only lowers usage: at the claim, usage was at most what
    was read before and at least what was read after. (Not what was read after the
    previous claim: a claim that borrows must not have fitted when it was made, after
    the releases and quota changes since.) False: a claim that fitted yet borrowed (the
    stale-limits bug, see ``settle_known_bugs``)."""
    if answer.code == QUOTA_EXCEEDED:
        q = answer.quota
        assert q is not None, answer
        key = (q["project"], model_key(q["gpuModel"]))
        assert q["tenant"] == "acme" and q["project"] in (None, answer.ask.project), q
        assert key in limits, f"refused by a limit that is not set: {q}"
        assert q["limit"] == limits[key][0 if q["resource"] == "gpus" else 1], (q, limits[key])
        used = "usedGpus" if q["resource"] == "gpus" else "usedNodes"
        assert after[key][used] <= q["used"] <= before[key][used], (q, before[key], after[key])
        assert q["used"] + q["requested"] > q["limit"], q
        if answer.ask.preemptible:
            assert q["resource"] == "nodes", f"a preemptible claim refused for GPUs: {q}"
    if answer.code != OK or answer.ask.dry_run:
        for key, quota in after.items():  # took nothing
            for used in ("usedGpus", "usedNodes", "borrowedGpus"):
                assert quota[used] <= before[key][used], (answer, key, before[key], quota)
        return True
    assert answer.allocation is not None
    keys, gpus, nodes = _counted_keys(answer)
    enforced = [key for key in keys if key in limits]
    for key in enforced:  # nodes are never borrowed
        limit = limits[key][1]
        assert nodes == 0 or limit is None or after[key]["usedNodes"] <= limit, (answer, key)
    if not answer.allocation["borrowed"]:
        for key in enforced:
            limit = limits[key][0]
            assert limit is None or after[key]["usedGpus"] <= limit, (answer, key, after[key])
        return True
    # Borrowed: preemptible, and beyond a GPU limit it counts against (the device chosen
    # was one the quota step removed: its GPUs passed a limit on one of its keys).
    assert answer.ask.preemptible, answer
    return any(
        limits[key][0] is not None and before[key]["usedGpus"] + gpus > limits[key][0]
        for key in enforced
    )


def _change_quota(stream: Stream, rng: random.Random) -> None:
    project, model = rng.choice(TARGETS)
    key = (project, model_key(model))
    if rng.random() < 0.25:
        lifted = stream.api.ok(DELETE, t="acme", p=project, m=model)["deleteQuota"]
        if key not in stream.limits:
            assert lifted is None
        else:
            assert lifted is not None and (lifted["gpus"], lifted["nodes"]) == stream.limits[key]
            del stream.limits[key]
        stream.figures["deleteQuota"] += 1
        return
    ceiling = 72 if project is None else 40
    gpus = None if rng.random() < 0.15 else rng.randrange(0, ceiling + 1, 2)
    nodes = None if rng.random() < 0.3 else rng.randrange(0, 7)
    given = {"tenant": "acme", "project": project, "gpuModel": model, "gpus": gpus, "nodes": nodes}
    too_high = set()
    if project is not None:  # within the tenant's limit on that model and on every model
        for tenant_key in {(None, key[1]), (None, "")}:
            tenant_gpus, tenant_nodes = stream.limits.get(tenant_key, (None, None))
            for name, value, limit in (("gpus", gpus, tenant_gpus), ("nodes", nodes, tenant_nodes)):
                if value is not None and limit is not None and value > limit:
                    too_high.add(name)
    body = stream.api.run(SET, i=given)
    if too_high:
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_INPUT", error
        assert error["extensions"]["field"] in too_high, (error, too_high)
        stream.figures["setQuota refused"] += 1
        return
    assert not body.get("errors"), (given, body["errors"])
    quota = body["data"]["setQuota"]
    assert (quota["gpus"], quota["nodes"]) == (gpus, nodes), quota
    stream.limits[key] = (gpus, nodes)
    stream.figures["setQuota"] += 1


def _release_one(stream: Stream, rng: random.Random, step: int) -> None:
    environment = rng.choice(sorted(stream.held))
    allocation_id = stream.held.pop(environment)
    released = stream.callers[step % len(stream.callers)].release(environment)
    # Its lease may have ended first: then the release answers the allocation as released.
    assert released["id"] == allocation_id, (environment, released)
    stream.figures["releases"] += 1


def _checkpoint(engine: Engine, stream: Stream, when: str) -> Account:
    found = account(engine)
    found.check(when)
    assert {k[1:]: v for k, v in found.limits.items() if k[0] == "acme"} == stream.limits
    # What the stream holds is active, but for leases the sweeper may have ended since.
    active = {a["environment"] for a in found.active.values()}
    assert active <= set(stream.held), f"{when}: active but not held: {active - set(stream.held)}"
    assert set(stream.held) - active <= stream.leased, f"{when}: released behind the stream's back"
    stream.figures["checkpoints"] += 1
    return found


def test_a_random_stream_of_claims_releases_leases_and_quota_changes_keeps_counters_exact(
    api: Api,
    db: sessionmaker[Session],
    engine: Engine,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="gpuinv")
    make_tenant(db, "acme", *PROJECTS)
    provisioner = make_token(db, "provisioner", "acme")
    fleet = [gpu_server(f"h100-{n}", H100) for n in range(STREAM_H100)]
    fleet += [gpu_server(f"a100-{n}", A100) for n in range(STREAM_A100)]
    vms = [gpu_vm(f"vm-{n}", H100) for n in range(STREAM_VMS)]
    api.ok(IMPORT, d=json.dumps({"devices": fleet, "vms": vms}))
    rng = random.Random(20261205)
    # A second replica on the same database, which sweeps leases every second; requests
    # alternate between the two (a provisioner, and a platform admin naming the tenant).
    sweeping = ServerThread(
        Settings(
            database_url=database_url,
            lease_sweep_seconds=1,
            token_cache_seconds=TOKEN_CACHE_SECONDS,
        )
    )
    with sweeping:
        callers = [
            Caller(api.url, provisioner, "acme"),
            Caller(sweeping.url, api.token or "", "acme", as_admin=True),
            Caller(sweeping.url, provisioner, "acme"),
            Caller(api.url, api.token or "", "acme", as_admin=True),
        ]
        stream = Stream(api, callers)
        started = time.monotonic()
        try:
            _run_stream(stream, rng, engine)
            eventually_no_lease(engine, 15)
            end = _checkpoint(engine, stream, "after the leases ended")
            for environment in sorted(stream.held):
                if any(a["environment"] == environment for a in end.active.values()):
                    callers[0].release(environment)
            stream.held.clear()
            empty = _checkpoint(engine, stream, "after releasing everything")
        finally:
            for caller in callers:
                caller.close()
    elapsed = time.monotonic() - started
    assert not empty.active
    assert all(usage == ZERO for usage in empty.counters.values()), empty.counters
    with db() as session:
        expired = session.scalars(
            select(AllocationRow.id).where(AllocationRow.released_by == "system:lease-expiry")
        ).all()
    figures = stream.figures
    print(
        f"\n[quota stream, {engine.dialect.name}] {STEPS} steps in {elapsed:.2f}s: "
        f"{dict(sorted(figures.items()))}; {len(expired)} leases ended by the sweeper"
    )
    assert figures[f"claim {OK}"] and figures[f"claim {QUOTA_EXCEEDED}"] and figures["borrowed"]
    assert figures["setQuota"] and figures["deleteQuota"] and figures["releases"]
    assert expired, "no lease ended while the stream ran"
    internal = [f"claim at step {n}" for n in range(figures[f"claim {INTERNAL}"])]
    internal += [failure for caller in callers for failure in caller.internal]
    logged = logged_internal_errors([r.getMessage() for r in caplog.records])
    where = f"the quota stream on {engine.dialect.name}"
    no_internal_errors_nor_stale_borrowing(where, internal, logged, stream.fitted_yet_borrowed)


def _run_stream(stream: Stream, rng: random.Random, engine: Engine) -> None:
    for step in range(STEPS):
        roll = rng.random()
        if stream.held and (roll < 0.25 or len(stream.held) > 14):
            _release_one(stream, rng, step)
        elif roll < 0.4:
            _change_quota(stream, rng)
        else:
            ask = _stream_ask(rng, step)
            before = stream.listing()
            answer = stream.callers[step % len(stream.callers)].match(ask)
            after = stream.listing()
            assert answer.code in ACCEPTABLE | {INTERNAL}, f"step {step}: {answer}"
            if not _judge_claim(answer, before, after, stream.limits):
                keys, gpus, _ = _counted_keys(answer)
                held = ", ".join(
                    f"{key}: {before[key]['usedGpus']}/{stream.limits[key][0]}"
                    for key in keys
                    if key in stream.limits
                )
                stream.fitted_yet_borrowed.append(
                    f"step {step}: {gpus} GPUs, GPUs held/limit just before: {held}"
                )
            stream.figures[f"claim {answer.code}"] += 1
            if answer.allocation is not None:
                stream.held[ask.environment] = answer.allocation["id"]
                if ask.ttl is not None:
                    stream.leased.add(ask.environment)
                stream.figures["borrowed"] += answer.allocation["borrowed"]
            elif answer.code == OK:
                assert ask.dry_run, answer
        if step % CHECK_EVERY == CHECK_EVERY - 1:
            _checkpoint(engine, stream, f"after step {step}")
