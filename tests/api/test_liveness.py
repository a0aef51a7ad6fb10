"""No request holds the others: GraphQL operations run in worker threads, so a long import
or a mutation waiting on SQLite's single writer leaves the event loop free, and /healthz and
small queries keep answering meanwhile. A liveness check, not a benchmark: the bound (1 s)
is what a load balancer's probe would tolerate, far above the few milliseconds measured.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from api.db.session import make_engine, session_factory, upgrade_to_head
from api.demo import SHAPES, server_document
from api.settings import Settings
from tests.support.api import Api, make_token
from tests.support.server import ServerThread

IMPORT = """mutation($data: String!) { importInventory(format: JSON, data: $data) {
  created updated unchanged } }"""
PROBE_BOUND_SECONDS = 1.0


def _fleet(count: int) -> str:
    rng = random.Random(7)
    devices = [
        server_document(
            rng, SHAPES[n % len(SHAPES)], "blr-1", "india", ["hall-1"], n, f"node-{n:05d}",
            f"SN{n}", status="available",
        )
        for n in range(count)
    ]  # fmt: skip
    return json.dumps({"devices": devices})


def _probe_while(api: Api, busy: threading.Thread) -> list[float]:
    """Seconds each /healthz and each small query took while ``busy`` ran."""
    waits = []
    with httpx.Client(base_url=api.url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {api.token}"}
        while busy.is_alive():
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            answer = client.post("/graphql", json={"query": "{ me { role } }"}, headers=headers)
            assert answer.json()["data"]["me"]["role"] == "platform-admin"
            waits.append(time.perf_counter() - started)
            time.sleep(0.05)
    return waits


def _in_background(work: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = work()
        except BaseException as exc:  # reported by the test
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_probes_and_small_queries_answer_during_a_20000_device_import(api: Api) -> None:
    data = _fleet(20_000)
    importing, outcome = _in_background(lambda: api.ok(IMPORT, data=data))
    waits = _probe_while(api, importing)
    importing.join()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["importInventory"]["created"] == 20_000
    assert len(waits) >= 5, "the import ended before the probes could see it"
    assert max(waits) < PROBE_BOUND_SECONDS, f"a probe waited {max(waits):.2f} s"


def test_a_mutation_waiting_for_sqlites_writer_holds_no_one_else(tmp_path: Path) -> None:
    """On the embedded default, SQLite: another process holds the write lock, and a
    mutation waits for it (up to the busy timeout) in its worker thread, not on the loop."""
    path = tmp_path / "gpuinv.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade_to_head(engine)
    settings = Settings(database_url=f"sqlite:///{path}", lease_sweep_seconds=3600)
    with ServerThread(settings) as server:
        api = Api(server.url, make_token(session_factory(engine), "platform-admin"))
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            creating, outcome = _in_background(
                lambda: api.ok('mutation { createTenant(slug: "waits", name: "W") { slug } }')
            )
            time.sleep(0.3)
            pause = threading.Thread(target=time.sleep, args=(1.0,))
            pause.start()
            waits = _probe_while(api, pause)
            assert creating.is_alive(), "the mutation did not wait for the writer"
        finally:
            writer.execute("ROLLBACK")
            writer.close()
        creating.join(30)
    engine.dispose()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["createTenant"]["slug"] == "waits"  # once the writer let go
    assert len(waits) >= 5 and max(waits) < PROBE_BOUND_SECONDS
