"""The replay itself: client threads sending the claims as fast as they go, timed one by
one, with the CPU sampled around them (bench.cpu) to say where it went.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.claims.workload import Claim
from bench.cpu import OTHER_LOAD, cpu_sample, used
from bench.graphql import Answer, GraphQLClient
from bench.report import problem
from bench.service import BenchError, Service
from bench.socket_client import SocketClient
from bench.stats import percentile

CLIENTS: dict[str, type[GraphQLClient] | type[SocketClient]] = {  # --client
    "httpx": GraphQLClient,
    "socket": SocketClient,
}


@dataclass
class RunResult:
    label: str
    code: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    retried: int = 0  # claimAttempts > 1
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, by whose
    other_cores: float = 0.0
    offending: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)

    @property
    def claims(self) -> int:
        return len(self.latencies)

    def percentile(self, p: float) -> float:
        """Milliseconds, nearest rank over every claim's request."""
        return percentile(self.latencies, p) * 1000


def outcome_of(answer: Answer) -> str:
    if answer.code is None:
        data = (answer.data or {}).get("matchDevice") or {}
        return "allocated" if data.get("allocation") else "answered without an allocation"
    return answer.code


def replay(
    server: Service,
    token: str,
    database: str,
    claims: list[Claim],
    clients: int,
    result: RunResult,
    client_kind: str,
) -> None:
    """``clients`` threads, each its own keep-alive connection (``client_kind``: httpx or
    socket), take the next claim until none is left. CPU is sampled just before they
    start and after the last answer."""
    lock = threading.Lock()
    position = iter(range(len(claims)))
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    messages: list[str] = []
    retried = 0
    ready = threading.Barrier(clients + 1)

    def client_thread(number: int) -> None:
        nonlocal retried
        client = CLIENTS[client_kind](server.base_url, token)
        try:
            for n in range(2):  # the connection made, this worker warm, nothing allocated
                answer = client.send(claims[(number * 2 + n) % len(claims)].request("warm", True))
                if answer.code not in (None, "NO_MATCH"):
                    messages.append(f"client {number} warm-up: {answer.code}: {answer.message}")
                    ready.abort()
                    return
            ready.wait()
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                request = claims[index].request("claims")
                started = time.perf_counter()
                try:
                    answer = client.send(request)
                except (httpx.HTTPError, OSError, BenchError) as exc:
                    seconds = time.perf_counter() - started
                    answer = Answer(seconds, None, type(exc).__name__, str(exc))
                outcome = outcome_of(answer)
                attempts = ((answer.data or {}).get("matchDevice") or {}).get("claimAttempts")
                with lock:
                    latencies.append(answer.seconds)
                    outcomes[outcome] += 1
                    retried += bool(attempts and attempts > 1)
                    if outcome not in ("allocated", "NO_MATCH") and len(messages) < 5:
                        messages.append(f"claim {index}: {outcome}: {answer.message[:300]}")
        finally:
            client.close()

    threads = [threading.Thread(target=client_thread, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=300)
    except threading.BrokenBarrierError as exc:
        for thread in threads:
            thread.join()
        raise BenchError(f"the clients' warm-up dry runs failed: {messages}") from exc
    before = cpu_sample(server.pgid, database)
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - started
    after = cpu_sample(server.pgid, database)
    result.latencies, result.outcomes, result.retried = latencies, outcomes, retried
    result.cpu = {
        "server": used(before.server, after.server),
        "postgres": used(before.postgres, after.postgres),
        # from its total at the start whatever it was then taken for (a backend just
        # forked may not show its database yet)
        "ours": used(before.postgres, after.ours),
        "client": after.client - before.client,
    }
    accounted = result.cpu["server"] + result.cpu["ours"] + result.cpu["client"]
    result.other_cores = max(0.0, (after.busy - before.busy - accounted) / (after.at - before.at))
    if result.other_cores > OTHER_LOAD:
        problem(
            f"[{result.label}] someone else used {result.other_cores:.2f} cores on average "
            "during the run: its figures are doubtful"
        )
    for message in messages:
        problem(f"[{result.label}] {message}")
    if len(latencies) != len(claims):
        problem(f"[{result.label}] {len(latencies)} of {len(claims)} claims answered")
