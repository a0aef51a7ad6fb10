"""Webhooks: events per second through the dispatcher, and what 5 webhooks add to a claim.

What is measured, and why (issue 16, "Performance")
---------------------------------------------------
One ``gpuinv serve`` (one worker, its dispatcher on: GPUINV_SECRET_KEY set, private
targets allowed, a 50 ms poll) on a fresh database, SQLite and PostgreSQL. The receiver is
a threaded HTTP server in this process on 127.0.0.1, answering 204 at once.

1. Delivery: the outbox is filled with ``--events`` allocation events at once (two per
   subject, a creation and a release, as claims and releases write them; a payload of an
   allocation's size), written straight to the database in one transaction, for
   ``--webhooks`` platform webhooks. Timed: from that commit to the last delivery
   received. Printed: deliveries/s (every event to every webhook), events/s, and the
   p50/p99 of each delivery's delay (commit to receipt). Every delivery must arrive
   exactly once (a duplicate or a loss is a problem).
2. The claim path: ``--claims`` matchDevice calls, one at a time (each released at once,
   untimed), with no webhook, then with ``--webhooks`` webhooks subscribed to every type
   and the dispatcher sending meanwhile; the order swapped every other run. Delivery is
   not on the claim path, so the difference is what writing the event in the claim's
   own transaction costs, and the dispatcher's work sharing the machine.

Each figure is the median of ``--runs`` runs (default 3), each on a fresh database.
Percentiles are nearest-rank (bench/stats.py). Nothing is asserted about time.
``python -m bench.webhooks --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import insert

from api.db.base import utcnow
from api.db.events import event_values
from api.db.models import EventRow
from api.db.session import make_engine
from api.domain.events import ALLOCATION_CREATED, ALLOCATION_RELEASED
from bench.graphql import GraphQLClient, body
from bench.options import add_backend, add_postgres_url, backends, postgres_reachable
from bench.report import PROBLEMS, finish, machine_line, problem, progress, table
from bench.service import (
    admin_token,
    cli,
    code_version,
    free_port,
    fresh_database,
    running_service,
    service_env,
)
from bench.stats import Latency

KEY = Fernet.generate_key().decode()
CREATE = "mutation($i: CreateWebhookInput!) { createWebhook(input: $i) { id } }"
DELETE = "mutation($id: ID!) { deleteWebhook(id: $id) { id } }"
IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
MATCH = "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"
RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { id } }"
CONFIG = json.dumps([{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}])
LABELS = {"paas.envmgmt.io/inventory": "baremetal", "paas.envmgmt.io/inventory.config": CONFIG}
SERVERS = 8


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops the dispatcher's parallel connects


@dataclass
class Receiver:
    """Counts what arrives, and when (perf_counter), by event id."""

    port: int = field(default_factory=free_port)
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook-{n}"

    @contextmanager
    def listening(self) -> Iterator[Receiver]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the dispatcher's pool reuses it

            def do_POST(self) -> None:
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    receiver.arrivals.append((time.perf_counter(), f"{self.path} {event['id']}"))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        server = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()

    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)

    def wait_for(self, total: int, budget: float) -> float:
        """perf_counter when ``total`` deliveries had arrived; a problem if they did not."""
        deadline = time.monotonic() + budget
        while self.count() < total and time.monotonic() < deadline:
            time.sleep(0.005)
        with self.lock:
            arrivals = list(self.arrivals)
        if len(arrivals) < total:
            problem(f"{len(arrivals)} of {total} deliveries arrived within {budget:.0f} s")
        twice = [k for k, n in Counter(key for _, key in arrivals).items() if n > 1]
        if twice:
            problem(f"{len(twice)} deliveries arrived more than once (none were lost acks)")
        return max((at for at, _ in arrivals), default=time.perf_counter())


def _none() -> Latency:
    return Latency.of([])


@dataclass
class RunFigures:
    deliveries_per_s: float = 0.0
    events_per_s: float = 0.0
    delay: Latency = field(default_factory=_none)  # commit to receipt
    claims_without: Latency = field(default_factory=_none)  # the dispatcher on
    claims_with: Latency = field(default_factory=_none)
    quiet_without: Latency = field(default_factory=_none)  # the dispatcher off
    quiet_with: Latency = field(default_factory=_none)


def _payload(n: int) -> dict[str, Any]:
    """An allocation as events carry it, of a real one's size (about 1.5 KiB)."""
    gpus = [{"index": i, "vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB"} for i in range(8)]
    return {
        "id": f"bench-{n}", "environment": f"env-{n}", "tenant": None, "project": None,
        "inventoryType": "BAREMETAL", "profile": None, "variables": {"gpu": "8"},
        "deviceDetails": {"hostname": f"gpu-{n % SERVERS}", "totalcpu": 128, "gpus": gpus},
        "createdAt": utcnow().isoformat(), "expiresAt": None, "releasedAt": None,
        "releasedBy": None, "preemptible": False, "borrowed": False, "priority": 0,
        "devices": [{"deviceId": f"d-{n}", "hostname": f"gpu-{n % SERVERS}",
                     "exclusive": True, "cpu": 128, "memoryMB": 1048576, "storageGB": 8000,
                     "gpus": 8}],
    }  # fmt: skip


def fill_outbox(url: str, events: int) -> float:
    """Write ``events`` events in one transaction; perf_counter at its commit."""
    rows = []
    for n in range(events // 2):
        subject = f"00000000-0000-4000-8000-{n:012d}"
        for kind in (ALLOCATION_CREATED, ALLOCATION_RELEASED):
            rows.append(event_values(kind, subject, None, _payload(n)))
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(insert(EventRow.__table__), rows)
        return time.perf_counter()
    finally:
        engine.dispose()


def claim_times(client: GraphQLClient, claims: int, tag: str) -> Latency:
    seconds = []
    for n in range(claims):
        environment = f"{tag}-{n}"
        given = {"environment": environment, "labels": LABELS, "variables": {"gpu": "8"}}
        answer = client.send(body(MATCH, {"i": given}))
        if answer.code is not None:
            problem(f"matchDevice {environment}: {answer.code}: {answer.message[:200]}")
            continue
        seconds.append(answer.seconds)
        client.timed(body(RELEASE, {"e": environment}))
    return Latency.of(seconds)


def _subscribe(client: GraphQLClient, receiver: Receiver, webhooks: int) -> list[str]:
    made = []
    for n in range(webhooks):
        given = {"url": receiver.url(n), "secret": "bench-secret-" * 2}
        made.append(client.ok(CREATE, i=given)["createWebhook"]["id"])
    return made


def claims_with_and_without(
    client: GraphQLClient,
    receiver: Receiver,
    args: argparse.Namespace,
    tag: str,
    run: int,
    sending: bool,
) -> tuple[Latency, Latency]:
    """Claim times without webhooks, and with ``args.webhooks`` subscribed (the order
    swapped every other run); with ``sending``, until their deliveries have all come."""

    def with_hooks() -> Latency:
        subscribed = _subscribe(client, receiver, args.webhooks)
        before = receiver.count()
        measured = claim_times(client, args.claims, f"{tag}-with")
        if sending:
            receiver.wait_for(before + 2 * args.claims * args.webhooks, budget=120)
        for hook in subscribed:
            client.ok(DELETE, id=hook)
        return measured

    claim_times(client, 20, f"{tag}-warm")  # the match index and caches, untimed
    if run % 2:
        hooked = with_hooks()
        return claim_times(client, args.claims, f"{tag}-without"), hooked
    without = claim_times(client, args.claims, f"{tag}-without")
    return without, with_hooks()


def one_run(backend: str, args: argparse.Namespace, run: int) -> RunFigures:
    figures, receiver, tag = RunFigures(), Receiver(), f"[{backend} run {run}]"
    env = {"GPUINV_SECRET_KEY": KEY, "GPUINV_WEBHOOK_ALLOW_PRIVATE": "1",
           "GPUINV_WEBHOOK_POLL_SECONDS": "0.05"}  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-hooks-") as tmp,
        fresh_database(backend, args.postgres_url, Path(tmp), "bench_hooks") as url,
        receiver.listening(),
    ):
        cli(url, "db", "upgrade")
        token = admin_token(url)
        with running_service(url, Path(tmp), env=service_env(url, env)) as service:
            client = GraphQLClient(service.base_url, token)
            servers = [{"hostname": f"gpu-{n}", "totalcpu": 128,
                        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8}
                       for n in range(SERVERS)]  # fmt: skip
            client.ok(IMPORT, d=json.dumps({"devices": servers}))
            # 1. the dispatcher's throughput, from a full outbox
            hooks = _subscribe(client, receiver, args.webhooks)
            wanted = args.events * args.webhooks
            committed = fill_outbox(url, args.events)
            last = receiver.wait_for(wanted, budget=600)
            figures.deliveries_per_s = wanted / (last - committed)
            figures.events_per_s = args.events / (last - committed)
            figures.delay = Latency.of([at - committed for at, _ in receiver.arrivals])
            progress(f"{tag} {figures.deliveries_per_s:,.0f} deliveries/s")
            for hook in hooks:
                client.ok(DELETE, id=hook)
            # 2. the claim path, the dispatcher sending meanwhile
            figures.claims_without, figures.claims_with = claims_with_and_without(
                client, receiver, args, f"sending-{run}", run, sending=True
            )
            client.close()
        # 3. the claim path, the events written but nobody sending (GPUINV_WEBHOOK_DISPATCH=0)
        quiet = service_env(url, env | {"GPUINV_WEBHOOK_DISPATCH": "0"})
        with running_service(url, Path(tmp), env=quiet) as service:
            client = GraphQLClient(service.base_url, token)
            figures.quiet_without, figures.quiet_with = claims_with_and_without(
                client, receiver, args, f"written-{run}", run, sending=False
            )
            client.close()
    progress(f"{tag} claims without/with webhooks: sending {figures.claims_without} / "
             f"{figures.claims_with}; not sending {figures.quiet_without} / "
             f"{figures.quiet_with}")  # fmt: skip
    return figures


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000, help="events in the outbox")
    parser.add_argument("--webhooks", type=int, default=5, help="webhooks subscribed")
    parser.add_argument("--claims", type=int, default=300, help="claims timed per phase")
    parser.add_argument("--runs", type=int, default=3, help="runs; medians are printed")
    add_backend(parser)
    add_postgres_url(parser, "bench_hooks")
    args = parser.parse_args(argv)
    chosen = backends(args.backend)
    if "postgresql" in chosen and not postgres_reachable(args.postgres_url):
        return 2
    results: dict[str, list[RunFigures]] = {backend: [] for backend in chosen}

    def work() -> None:
        for backend in chosen:
            for run in range(1, args.runs + 1):
                results[backend].append(one_run(backend, args, run))

    def report() -> str:
        rows = []
        for backend, runs in results.items():
            if not runs:
                continue

            def med(pick: Any, runs: list[RunFigures] = runs) -> float:
                return _median([pick(r) for r in runs])

            def claims(without: Any, hooked: Any) -> list[str]:
                base, more = med(lambda r: without(r).p50), med(lambda r: hooked(r).p50)
                return [
                    f"{base:.2f} / {med(lambda r: without(r).p99):.2f}",
                    f"{more:.2f} / {med(lambda r: hooked(r).p99):.2f}",
                    f"{more - base:+.2f}",
                ]

            rows.append([
                backend, str(len(runs)), f"{med(lambda r: r.deliveries_per_s):,.0f}",
                f"{med(lambda r: r.events_per_s):,.0f}",
                f"{med(lambda r: r.delay.p50):,.0f} / {med(lambda r: r.delay.p99):,.0f}",
                *claims(lambda r: r.claims_without, lambda r: r.claims_with),
                *claims(lambda r: r.quiet_without, lambda r: r.quiet_with),
            ])  # fmt: skip
        hooks = f"{args.webhooks} hooks"
        header = ["backend", "runs", "deliveries/s", "events/s", "delay p50/p99 ms",
                  "no hooks", hooks, "Δ p50", "no hooks", f"{hooks}, unsent", "Δ p50"]  # fmt: skip
        lines = [
            f"gpu-inventory webhook benchmark; code {code_version()}",
            machine_line(),
            f"Load average at the end: {os.getloadavg()[0]:.2f} (1 min)",
            f"{args.events} events to {args.webhooks} webhooks; {args.claims} claims per "
            "phase, one at a time; medians of the runs. Claim p50 / p99 in ms: the "
            "dispatcher sending meanwhile, then not running (GPUINV_WEBHOOK_DISPATCH=0).",
            "",
            *table(header, rows),
        ]
        lines += ["", "Problems:", *PROBLEMS] if PROBLEMS else []
        return "\n".join(lines)

    return finish(work, report)


if __name__ == "__main__":
    raise SystemExit(main())
