"""Operations endpoints on the running service: /metrics (Prometheus text, no token) and
the request id that ties a response, its log line and its audit events together."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db.base import utcnow
from api.db.models import AuditEventRow, SyncStateRow
from api.db.session import unit_of_work
from tests.support.api import Api
from tests.support.fleet import fleet, labels, server
from tests.support.metrics import scrape, value

MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { id } } }"""


def test_metrics_report_allocations_gpus_outcomes_latency_and_sync_lag(
    api: Api, db: sessionmaker[Session]
) -> None:
    fleet(api, server("gpu-1"), server("gpu-2", vendor="AMD"))
    before = scrape(api)
    request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    api.ok(MATCH, input={"environment": "e-1", **request})
    failed = api.run(MATCH, input={"environment": "e-2", **request})
    assert failed["errors"][0]["extensions"]["code"] == "NO_MATCH"
    with unit_of_work(db) as session:
        session.add(SyncStateRow(source="netbox", last_success_at=utcnow() - timedelta(seconds=90)))
    after = scrape(api)

    assert value(after, "gpuinv_allocations_active") == 1
    assert value(after, "gpuinv_gpus_allocated", vendor="NVIDIA", model="H100") == 8
    assert value(after, "gpuinv_gpus_available", vendor="NVIDIA", model="H100") == 0
    assert value(after, "gpuinv_gpus_available", vendor="AMD", model="H100") == 8
    assert value(after, "gpuinv_devices", kind="baremetal", status="allocated") == 1

    def grew(name: str, **labels: str) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert grew("gpuinv_match_outcomes_total", outcome="ALLOCATED") == 1
    assert grew("gpuinv_match_outcomes_total", outcome="NO_MATCH") == 1
    assert grew("gpuinv_request_duration_seconds_count", operation="matchDevice") == 2
    assert 90 <= value(after, "gpuinv_sync_lag_seconds", source="netbox") < 120
    assert value(after, "gpuinv_sync_failing", source="netbox") == 0


def test_the_request_id_is_echoed_and_recorded_with_the_audit_event(
    api: Api, db: sessionmaker[Session]
) -> None:
    create = 'mutation { createDevice(input: {hostname: "gpu-9"}) { id } }'
    response = api.post(create, headers={"X-Request-Id": "pipeline-42.step-3"})
    assert response.headers["x-request-id"] == "pipeline-42.step-3"
    with db() as session:
        event = session.scalar(select(AuditEventRow).where(AuditEventRow.object_name == "gpu-9"))
    assert event is not None and event.request_id == "pipeline-42.step-3"

    # an id that is not a sane token is replaced, not trusted into logs and the audit log
    for odd in (b"x y {}" * 30, "r\u00e9sum\u00e9".encode()):
        response = api.post("{ me { name } }", headers={"X-Request-Id": odd})  # type: ignore[dict-item]
        replaced = response.headers["x-request-id"]
        assert replaced.encode() != odd and len(replaced) == 32
    # every response gets one, also outside GraphQL
    assert httpx.get(f"{api.url}/healthz").headers["x-request-id"]
    assert json.loads(httpx.get(f"{api.url}/readyz").text)["ready"] is True
