"""Provision requests and preemption at /metrics (issue 17's views): the gauges read from the
database at each scrape, per tenant slug ("" for platform-wide), against the real server on
both backends. The queue's rounds are run by the test (request_queue.serve), as in
tests/api/test_provision_requests.py; the dashboard's Requests view is
tests/api/test_dashboard_requests.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from api.db.base import utcnow
from api.db.models import ProvisionRequestRow
from api.db.session import unit_of_work
from tests.support.api import Api, make_tenant, make_token
from tests.support.metrics import scrape, value
from tests.support.queue import gpu_ask, h100_server, serve_round

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
REQUEST = """mutation($i: ProvisionRequestInput!) { requestDevices(input: $i) {
  id state } }"""
LIST = "{ provisionRequests(filter: {limit: 1000}) { state tenant } }"
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"""
RELEASE = """mutation($e: String!, $t: String) { releaseAllocation(environment: $e, tenant: $t) {
  releasedAt } }"""
OPEN_STATES = ("PENDING_APPROVAL", "APPROVED", "QUEUED")
TENANTS = ("", "acme", "other")  # "": platform-wide


@pytest.fixture
def callers(api: Api, db: sessionmaker[Session]) -> dict[str, Api]:
    """Tenants acme and other; the pool: two H100 servers of 8 GPUs."""
    make_tenant(db, "acme")
    make_tenant(db, "other")
    devices = [h100_server(f"h100-{n}") for n in range(2)]
    api.ok(IMPORT, d=json.dumps({"devices": devices}))
    return {
        "platform": api,
        "acme": api.as_(make_token(db, "provisioner", "acme")),
        "acme-admin": api.as_(make_token(db, "partner-admin", "acme")),
        "other-admin": api.as_(make_token(db, "partner-admin", "other")),
    }


def _request(caller: Api, environment: str, **extra: Any) -> dict[str, Any]:
    body = caller.ok(REQUEST, i=gpu_ask(environment, reason=f"run {environment}", **extra))
    asked: dict[str, Any] = body["requestDevices"]
    return asked


def _fill_pool(platform: Api, preemptible: bool = False) -> None:
    """other holds both servers: o-1, preemptible if asked, and o-2, never."""
    platform.ok(MATCH, i=gpu_ask("o-1", tenant="other", preemptible=preemptible))
    platform.ok(MATCH, i=gpu_ask("o-2", tenant="other"))


def _release(platform: Api, environment: str) -> None:
    """other's allocation of that environment, released by the platform."""
    released = platform.ok(RELEASE, e=environment, t="other")["releaseAllocation"]
    assert released and released["releasedAt"]


def test_open_requests_are_counted_by_tenant_and_state_as_graphql_lists_them(
    callers: dict[str, Api],
) -> None:
    _fill_pool(callers["platform"])
    assert _request(callers["acme"], "pending-1")["state"] == "PENDING_APPROVAL"
    assert _request(callers["acme"], "pending-2")["state"] == "PENDING_APPROVAL"
    assert _request(callers["acme-admin"], "queued")["state"] == "QUEUED"
    later = (utcnow() + timedelta(hours=1)).isoformat()
    assert _request(callers["other-admin"], "later", startsAt=later)["state"] == "APPROVED"
    assert _request(callers["platform"], "platform-wide")["state"] == "QUEUED"
    cancelled = _request(callers["acme"], "withdrawn")
    callers["acme"].ok("mutation($id: ID!) { cancelRequest(id: $id) { state } }",
                       id=cancelled["id"])  # fmt: skip
    samples = scrape(callers["platform"])

    def counted(tenant: str, state: str) -> float | None:
        return value(samples, "gpuinv_provision_requests", tenant=tenant, state=state)

    assert (counted("acme", "PENDING_APPROVAL"), counted("acme", "QUEUED")) == (2, 1)
    assert counted("other", "APPROVED") == 1
    assert counted("", "QUEUED") == 1
    # Every tenant has every open state, 0 where it has none; closed states are not reported.
    expected = {(tenant, state): 0.0 for tenant in TENANTS for state in OPEN_STATES}
    for request in callers["platform"].ok(LIST)["provisionRequests"]:
        if request["state"] in OPEN_STATES:
            expected[request["tenant"] or "", request["state"]] += 1
    reported = {
        (dict(labels)["tenant"], dict(labels)["state"]): amount
        for (name, labels), amount in samples.items()
        if name == "gpuinv_provision_requests"
    }
    assert reported == expected


def test_the_wait_counts_from_approval_or_a_later_start_and_only_while_waiting(
    callers: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _fill_pool(callers["platform"])
    queued = _request(callers["acme-admin"], "queued")
    started = _request(callers["other-admin"], "started")
    later = (utcnow() + timedelta(hours=1)).isoformat()
    _request(callers["platform"], "not-yet", startsAt=later)
    assert {queued["state"], started["state"]} == {"QUEUED"}
    now = utcnow()
    with unit_of_work(db) as session:  # as if they had been approved hours ago
        session.execute(
            update(ProvisionRequestRow)
            .where(ProvisionRequestRow.id == queued["id"])
            .values(queued_at=now - timedelta(hours=2))
        )
        # approved 3 h ago to start 1 h ago: it has waited for capacity for 1 h
        session.execute(
            update(ProvisionRequestRow)
            .where(ProvisionRequestRow.id == started["id"])
            .values(queued_at=now - timedelta(hours=3), starts_at=now - timedelta(hours=1))
        )
    samples = scrape(callers["platform"])

    def waited(tenant: str) -> float:
        found = value(samples, "gpuinv_provision_request_wait_seconds", tenant=tenant)
        assert found is not None, tenant
        return found

    # The scrape comes after the update: at least the time set, and well under an hour more.
    assert 7200 <= waited("acme") < 7200 + 3600
    assert 3600 <= waited("other") < 3600 + 3600
    assert waited("") == 0  # its start is an hour away: it waits for that, not for capacity
    _release(callers["platform"], "o-1")
    fulfilled = serve_round(db).fulfilled
    assert queued["id"] in fulfilled or started["id"] in fulfilled
    samples = scrape(callers["platform"])
    gone = "acme" if queued["id"] in fulfilled else "other"
    assert waited(gone) == 0  # fulfilled: no longer waiting


def test_preemption_shows_as_preempting_then_counts_as_preempted(
    callers: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _fill_pool(callers["platform"], preemptible=True)
    urgent = _request(callers["acme-admin"], "urgent", priority=10)
    assert urgent["state"] == "QUEUED"
    before = scrape(callers["platform"])
    for tenant in TENANTS:
        assert value(before, "gpuinv_allocations_preempting", tenant=tenant) == 0
        assert value(before, "gpuinv_allocations_preempted_total", tenant=tenant) == 0

    assert len(serve_round(db).preempting) == 1
    during = scrape(callers["platform"])
    assert value(during, "gpuinv_allocations_preempting", tenant="other") == 1
    assert value(during, "gpuinv_allocations_preempting", tenant="acme") == 0
    assert value(during, "gpuinv_allocations_preempted_total", tenant="other") == 0

    assert len(serve_round(db, timedelta(seconds=301)).preempted) == 1
    after = scrape(callers["platform"])
    assert value(after, "gpuinv_allocations_preempting", tenant="other") == 0
    assert value(after, "gpuinv_allocations_preempted_total", tenant="other") == 1
    assert value(after, "gpuinv_allocations_preempted_total", tenant="acme") == 0
    # A release by its owner (the platform, here) is not a preemption.
    _release(callers["platform"], "o-2")
    final = scrape(callers["platform"])
    assert value(final, "gpuinv_allocations_preempted_total", tenant="other") == 1


def test_the_preempted_count_is_a_counter_family_and_the_rest_are_gauges(
    callers: dict[str, Api],
) -> None:
    """Prometheus' naming: _total only on a counter, whose increase() means preemptions per
    interval; the others go up and down."""
    text = httpx.get(f"{callers['platform'].url}/metrics").text
    types = {family.name: family.type for family in text_string_to_metric_families(text)}
    assert types["gpuinv_allocations_preempted"] == "counter"
    for name in (
        "gpuinv_provision_requests",
        "gpuinv_provision_request_wait_seconds",
        "gpuinv_allocations_preempting",
    ):
        assert types[name] == "gauge", name
