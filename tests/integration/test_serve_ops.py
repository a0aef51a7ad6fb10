"""`gpuinv serve` as operators run it: JSON log lines with the request id, the operations
endpoints on their own address, and /metrics adding up several workers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.database import fresh_postgres_database
from tests.support.processes import serving, token
from tests.support.server import free_port


def _wait_for(check, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"never saw {what}")


def test_json_logs_carry_the_request_id_and_ops_listen_on_their_own_address(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    ops_port = free_port()
    ops = f"http://127.0.0.1:{ops_port}"
    with serving(
        url, tmp_path, "--log-format", "json", "--ops-address", f"127.0.0.1:{ops_port}"
    ) as (
        base,
        log,
    ):
        secret = token(url, tmp_path)
        response = httpx.post(
            f"{base}/graphql",
            json={"query": "{ me { name } }"},
            headers={"Authorization": f"Bearer {secret}", "X-Request-Id": "trace-42"},
        )
        assert response.status_code == 200 and response.headers["x-request-id"] == "trace-42"

        def access_line() -> dict | None:
            for line in log.read_text().splitlines():
                record = json.loads(line)  # every line is a JSON object
                if record.get("request_id") == "trace-42" and record["logger"] == "gpuinv.access":
                    return record
            return None

        record = _wait_for(access_line, "the access line of trace-42")
        assert record["operation"] == "me" and record["status"] == 200
        assert record["method"] == "POST" and record["path"] == "/graphql"
        assert record["duration_ms"] > 0 and record["level"] == "INFO" and record["time"]

        # /metrics lives on the ops address only; the ops address serves nothing else
        assert httpx.get(f"{base}/metrics").status_code == 404
        assert httpx.get(f"{ops}/metrics").status_code == 200
        assert httpx.get(f"{ops}/healthz").text == "ok"
        assert httpx.get(f"{ops}/readyz").json()["ready"] is True
        assert httpx.post(f"{ops}/graphql", json={"query": "{ me { name } }"}).status_code == 404
        assert httpx.get(f"{base}/healthz").text == "ok"  # load balancers still find it


def test_metrics_add_up_every_worker(tmp_path: Path) -> None:
    url, drop = fresh_postgres_database("gpuinv_ops")
    ops_port = free_port()
    try:
        args = ("--workers", "2", "--ops-address", f"127.0.0.1:{ops_port}")
        with serving(url, tmp_path, *args) as (base, _):
            secret = token(url, tmp_path)
            # new connections each time, so both workers answer some
            for _ in range(30):
                httpx.post(
                    f"{base}/graphql",
                    json={"query": "{ me { name } }"},
                    headers={"Authorization": f"Bearer {secret}"},
                )
            text = httpx.get(f"http://127.0.0.1:{ops_port}/metrics").text
            counts = [
                sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
                if sample.name == "gpuinv_request_duration_seconds_count"
                and sample.labels.get("operation") == "me"
            ]
            assert counts == [30], counts
    finally:
        drop()
