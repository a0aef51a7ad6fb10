"""The replay of one mode against a running service: the arrivals submitted at their
simulated time, the requests polled until fulfilled, each allocation released when its
work is done, a preempted one's rest submitted again. Every time kept is the service's
own (a request's requestedAt, its allocation's createdAt and releasedAt), so the figures
do not depend on how often this client looks.

Three threads: this one submits the arrivals on time; a poller reads every open request
(and every held preemptible allocation) with ``provisionRequest(id)``, 25 to a request as
aliases; a releaser calls ``releaseAllocation`` when an allocation's work is done.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.graphql import GraphQLClient, body
from bench.report import problem, progress
from bench.requests.checks import DatabaseWatch
from bench.requests.workload import Arrival

FIELDS = (
    "id state requestedAt lastErrorCode allocation { state createdAt releasedAt devices { gpus } }"
)
SUBMIT = "mutation($i: ProvisionRequestInput!) { requestDevices(input: $i) { " + FIELDS + " } }"
RELEASE = (
    "mutation($e: String!, $t: String) { releaseAllocation(environment: $e, tenant: $t) "
    "{ state releasedAt releasedBy } }"
)
FIND = "query($f: ProvisionRequestFilter) { provisionRequests(filter: $f) { " + FIELDS + " } }"
OPEN = frozenset({"PENDING_APPROVAL", "APPROVED", "QUEUED"})
ENDED = frozenset({"REJECTED", "CANCELLED", "EXPIRED"})
BATCH = 25  # provisionRequest aliases a poll (the service allows 30: GPUINV_MAX_QUERY_ALIASES)
SHOWN = 5  # messages of one kind shown a mode; the rest counted
MIN_REST_HOURS = 1 / 60  # a preempted job with less than a minute left is done


@dataclass(frozen=True)
class Mode:
    name: str
    priorities: bool  # each arrival's priority and preemptible flag sent; else 0 and false
    tenants: bool  # requested as its tenant (quota, fair share); else platform-wide
    quotas: bool  # the tenants' GPU quotas set
    about: str


MODES = {
    "queue": Mode(
        "queue", True, True, True,
        "each tenant's partner-admin token; its quota; the arrivals' priorities and "
        "preemptible flags: the queue's priority order, fair share, backfill, preemption",
    ),
    "fcfs": Mode(
        "fcfs", False, False, False,
        "one platform-admin token, no tenant on the requests (so no quota and no fair "
        "share: every request in one tenant-less queue), priority 0, preemptible false: "
        "the queue served by age alone (with its backfill window), never preempting",
    ),
    "fcfs-quota": Mode(
        "fcfs-quota", False, True, True,
        "as queue, but every priority 0 and preemptible false: quotas without borrowing "
        "or preemption; equal priorities go by tenant share of quota, then age",
    ),
}  # fmt: skip


@dataclass
class Job:
    """One request the pipeline submitted: an arrival, or the rest of a preempted one."""

    arrival: Arrival
    environment: str
    hours: float  # work left when submitted
    attempt: int  # 0: the arrival itself; n: its n-th re-submission after a preemption
    request_id: str = ""
    state: str = ""
    last_error: str | None = None
    submitted: float | None = None  # epoch seconds: the request's requestedAt
    fulfilled: float | None = None  # its allocation's createdAt
    released: float | None = None  # its allocation's releasedAt (by us, or preempted)
    gpus: int = 0  # what the allocation holds
    marked: bool = False  # seen PREEMPTING
    preempted: bool = False

    @property
    def held(self) -> bool:
        return self.fulfilled is not None and self.released is None


@dataclass
class ModeRun:
    mode: Mode
    speed: float
    code: str
    started: float = 0.0  # epoch seconds of simulated hour 0
    ended: float = 0.0  # epoch seconds of the replay's end
    jobs: list[Job] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)  # real seconds each arrival was late
    submit_seconds: list[float] = field(default_factory=list)  # requestDevices round trips
    poll_seconds: list[float] = field(default_factory=list)  # one poll of every open request
    messages: Counter[str] = field(default_factory=Counter)
    stuck: list[tuple[str, str]] = field(default_factory=list)  # (environment, scenario)
    checks: list[str] = field(default_factory=list)


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Clients:
    """One thread's GraphQL clients: a tenant's token for its requests in a mode that asks
    as the tenants, else the platform admin's."""

    def __init__(self, base_url: str, admin: str, tokens: dict[str, str], mode: Mode):
        self.admin = GraphQLClient(base_url, admin)
        self.by_tenant = {t: GraphQLClient(base_url, k) for t, k in tokens.items()}
        self.mode = mode

    def of(self, job: Job) -> GraphQLClient:
        return self.by_tenant[job.arrival.tenant] if self.mode.tenants else self.admin

    def close(self) -> None:
        for client in [self.admin, *self.by_tenant.values()]:
            client.close()


class Replay:
    def __init__(
        self,
        run: ModeRun,
        base_url: str,
        admin: str,
        tokens: dict[str, str],
        poll: float,
        watch: DatabaseWatch,
    ):
        self.run, self.mode, self.poll, self.watch = run, run.mode, poll, watch
        self.base_url, self.admin, self.tokens = base_url, admin, tokens
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.releases: list[tuple[float, int, Job]] = []  # (due, tie-break, job), a heap
        self.order = itertools.count()
        self.stop = threading.Event()

    def replay(self, arrivals: list[Arrival], hours: float) -> None:
        run = self.run
        run.started = time.time() + 1.0
        run.ended = run.started + hours * 3600 / run.speed
        threads = [threading.Thread(target=self._polls), threading.Thread(target=self._releases)]
        for thread in threads:
            thread.start()
        clients = self.connect()
        try:
            for arrival in arrivals:
                due = run.started + arrival.at_hours * 3600 / run.speed
                time.sleep(max(0.0, due - time.time()))
                run.lags.append(time.time() - due)
                self.submit(Job(arrival, arrival.environment, arrival.hours, 0), clients)
            time.sleep(max(0.0, run.ended - time.time()))
        finally:
            with self.wake:
                self.stop.set()
                self.wake.notify_all()
            for thread in threads:
                thread.join()
            self.poll_once(clients.admin, every=True)  # how things stood at the end
            clients.close()
        run.checks.append(self.compare_held())

    def compare_held(self) -> str:
        """What this client holds against the database's active allocations, by
        environment, just after the last poll (the queue still running: a request
        fulfilled since is told apart)."""
        database = self.watch.held()
        with self.lock:
            mine = {j.environment: j for j in self.run.jobs if j.held}
            waiting = {j.environment for j in self.run.jobs if j.state in OPEN}
        count = Counter(env for env, _ in database)
        odd = [f"{env}: {n} active allocations" for env, n in count.items() if n > 1]
        odd += [
            f"{env}: active in the database ({gpus} GPUs), "
            + ("released" if env in {j.environment for j in self.run.jobs} else "unknown")
            + " here"
            for env, gpus in database
            if env not in mine and env not in waiting
        ]
        gone = [env for env in mine if env not in count]
        who = self.watch.released_by(gone) if gone else {}
        odd += [f"{env}: held here, released in the database by {who.get(env)}" for env in gone]
        if not odd:
            return (
                f"client and database agree: {len(mine)} allocations, "
                f"{sum(j.gpus for j in mine.values())} GPUs held at the end"
            )
        return f"client and database DISAGREE at the end: {len(odd)}: " + "; ".join(odd[:10])

    def connect(self) -> Clients:
        return Clients(self.base_url, self.admin, self.tokens, self.mode)

    def complain(self, kind: str, message: str) -> None:
        self.run.messages[kind] += 1
        if self.run.messages[kind] <= SHOWN:
            problem(f"[{self.mode.name}] {message}")

    # --- submitting ---------------------------------------------------------------------

    def submit(self, job: Job, clients: Clients) -> None:
        a = job.arrival
        given: dict[str, Any] = {
            "environment": job.environment,
            "profile": a.profile,
            "variables": a.variables(),
            "reason": f"simulated job {a.number} ({job.hours:.2f} h of work)",
            "priority": a.priority if self.mode.priorities else 0,
            "preemptible": a.preemptible and self.mode.priorities,
        }
        if self.mode.tenants:
            given["tenant"] = a.tenant
        answer = clients.of(job).send(body(SUBMIT, {"i": given}))
        self.run.submit_seconds.append(answer.seconds)
        found = (answer.data or {}).get("requestDevices")
        if answer.code is not None or found is None:
            self.complain("submit", f"requestDevices {job.environment}: {answer.code}: "
                                    f"{answer.message[:300]}")  # fmt: skip
            found = self.adopt(job, clients)  # as a pipeline would look before trying again
            if found is None:
                return
        with self.lock:
            self.run.jobs.append(job)
            again = self.observe(job, found)
        if again is not None:
            self.submit(again, clients)

    def adopt(self, job: Job, clients: Clients) -> dict[str, Any] | None:
        """The request a failed requestDevices may have made all the same (newest first)."""
        given = {"environment": job.environment, "limit": 1}
        answer = clients.admin.send(body(FIND, {"f": given}))
        found = (answer.data or {}).get("provisionRequests") or []
        if answer.code is not None or not found:
            return None
        self.complain("adopted", f"{job.environment}: the request was made all the same "
                                 f"({found[0]['state']}); followed from here")  # fmt: skip
        return dict(found[0])

    def sent_preemptible(self, job: Job) -> bool:
        return job.arrival.preemptible and self.mode.priorities

    # --- what the service says (called with the lock held) --------------------------------

    def observe(self, job: Job, found: dict[str, Any]) -> Job | None:
        """A request as read; returns the rest of a preempted job to submit again."""
        job.request_id, job.state = found["id"], found["state"]
        job.last_error = found.get("lastErrorCode")
        if job.submitted is None:
            job.submitted = epoch(found["requestedAt"])
        if job.state in ENDED:
            self.complain("ended", f"request {job.request_id} ({job.environment}) became "
                                   f"{job.state}, which nobody asked for")  # fmt: skip
        allocation = found.get("allocation")
        return self.allocation_seen(job, allocation) if allocation else None

    def allocation_seen(self, job: Job, allocation: dict[str, Any]) -> Job | None:
        if job.fulfilled is None:
            job.fulfilled = epoch(allocation["createdAt"])
            job.gpus = sum(d["gpus"] for d in allocation["devices"])
            due = job.fulfilled + job.hours * 3600 / self.run.speed
            heapq.heappush(self.releases, (due, next(self.order), job))
            self.wake.notify()
        state = allocation["state"]
        job.marked = job.marked or state in ("PREEMPTING", "PREEMPTED")
        if state == "RELEASED" and job.released is None:
            job.released = epoch(allocation["releasedAt"])
        if state != "PREEMPTED" or job.preempted:
            return None
        job.preempted, job.released = True, epoch(allocation["releasedAt"])
        if not self.sent_preemptible(job):
            self.complain("victim", f"{job.environment} was preempted but was not preemptible")
        rest = job.hours - (job.released - job.fulfilled) * self.run.speed / 3600
        if rest < MIN_REST_HOURS:
            return None
        return Job(job.arrival, f"{job.arrival.environment}-r{job.attempt + 1}", rest,
                   job.attempt + 1)  # fmt: skip

    # --- the poller -----------------------------------------------------------------------

    def _polls(self) -> None:
        clients = self.connect()
        next_look = time.time()
        hour = 1
        try:
            while not self.stop.wait(self.poll):
                started = time.perf_counter()
                if self.poll_once(clients.admin, resubmit=clients):
                    self.run.poll_seconds.append(time.perf_counter() - started)
                if time.time() >= self.run.started + hour * 3600 / self.run.speed:
                    self.say_how_it_stands(hour)
                    hour += 1
                if self.watch.every > 0 and time.time() >= next_look:
                    next_look = time.time() + self.watch.every
                    at = (time.time() - self.run.started) * self.run.speed / 3600
                    self.run.stuck += self.watch.sample(at)
        finally:
            clients.close()

    def say_how_it_stands(self, hour: int) -> None:
        in_database = sum(gpus for _, gpus in self.watch.held())
        with self.lock:
            held = sum(j.gpus for j in self.run.jobs if j.held)
            waiting = sum(j.state in OPEN for j in self.run.jobs)
            preempted = sum(j.preempted for j in self.run.jobs)
            submitted = len(self.run.jobs)
        progress(
            f"[{self.mode.name}] {hour} h: {submitted} submitted, {waiting} waiting, "
            f"{held} GPUs held ({in_database} in the database), {preempted} preempted"
        )

    def poll_once(
        self, client: GraphQLClient, every: bool = False, resubmit: Clients | None = None
    ) -> int:
        """Read every open request, and every held allocation that may be preempted (or,
        ``every``, every held one); how many were read."""
        with self.lock:
            due = [
                j for j in self.run.jobs
                if j.state in OPEN or (j.held and (every or self.sent_preemptible(j)))
            ]  # fmt: skip
        for start in range(0, len(due), BATCH):
            chunk = due[start : start + BATCH]
            query = " ".join(
                f'r{n}: provisionRequest(id: "{j.request_id}") {{ {FIELDS} }}'
                for n, j in enumerate(chunk)
            )
            answer = client.send(body("query { " + query + " }"))
            if answer.code is not None or answer.data is None:
                self.complain("poll", f"provisionRequest: {answer.code}: {answer.message[:300]}")
                continue
            data = answer.data
            with self.lock:
                again = [self.observe(j, data[f"r{n}"]) for n, j in enumerate(chunk)]
            for job in again:
                if job is not None and resubmit is not None:
                    self.submit(job, resubmit)
        return len(due)

    # --- the releaser ---------------------------------------------------------------------

    def _releases(self) -> None:
        clients = self.connect()
        try:
            while True:
                with self.wake:
                    while not self.stop.is_set() and (
                        not self.releases or self.releases[0][0] > time.time()
                    ):
                        self.wake.wait(self.releases[0][0] - time.time() if self.releases else None)
                    if self.stop.is_set():
                        return
                    job = heapq.heappop(self.releases)[2]
                    if job.released is not None:
                        continue
                self.release(job, clients)
        finally:
            clients.close()

    def release(self, job: Job, clients: Clients) -> None:
        tenant = job.arrival.tenant if self.mode.tenants else None
        asked = time.time()
        answer = clients.of(job).send(body(RELEASE, {"e": job.environment, "t": tenant}))
        found = (answer.data or {}).get("releaseAllocation")
        if answer.code is not None or found is None:
            self.complain("release", f"releaseAllocation {job.environment}: {answer.code}: "
                                     f"{answer.message[:300] or 'null'}")  # fmt: skip
            return
        if found["state"] == "RELEASED" and epoch(found["releasedAt"]) < asked - 0.5:
            early = (asked - epoch(found["releasedAt"])) * self.run.speed / 60
            self.complain("released early", f"{job.environment} (request {job.request_id}, "
                          f"{job.state}) had been released by {found['releasedBy']} "
                          f"{early:.0f} simulated minutes before its work was done")  # fmt: skip
        with self.lock:
            again = self.allocation_seen(job, found)
        if again is not None:
            self.submit(again, clients)
