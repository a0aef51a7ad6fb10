"""Provision requests through the real server (DESIGN.md "Priority, preemption, provision
requests"): submission checked as matchDevice is, approval by people and by policy, every
move of the state machine and the refusals of the ones it lacks, tenancy, and the queue's
rounds (run here by the test at the times it chooses: request_queue.serve). Both backends."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db.base import utcnow
from tests.support.api import Api, make_tenant, make_token
from tests.support.queue import capacity_labels, gpu_ask, h100_server, serve_round

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
FIELDS = """id state environment tenant project priority preemptible gpus reason requestedBy
  decidedBy note lastError lastErrorCode queuePosition startsAt
  allocation { id environment state devices { hostname gpus } }
  explanation { steps { filter left } }"""
REQUEST = f"mutation($i: ProvisionRequestInput!) {{ requestDevices(input: $i) {{ {FIELDS} }} }}"
APPROVE = f"mutation($id: ID!, $n: String) {{ approveRequest(id: $id, note: $n) {{ {FIELDS} }} }}"
REJECT = f"mutation($id: ID!, $n: String) {{ rejectRequest(id: $id, note: $n) {{ {FIELDS} }} }}"
CANCEL = f"mutation($id: ID!) {{ cancelRequest(id: $id) {{ {FIELDS} }} }}"
ONE = f"query($id: ID!) {{ provisionRequest(id: $id) {{ {FIELDS} }} }}"
LIST = f"""query($f: ProvisionRequestFilter) {{ provisionRequests(filter: $f) {{ {FIELDS} }} }}"""
POLICY = """mutation($i: ApprovalPolicyInput!) { setApprovalPolicy(input: $i) {
  tenant maxGpus projects } }"""
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
  allocation { id environment devices { hostname } } } }"""
RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { releasedAt } }"
ALLOCATIONS = """{ allocations(filter: {active: true}) { edges { node {
  environment state preemptAt tenant devices { hostname } } } } }"""


def _ask(environment: str, gpus: int = 8, **extra: Any) -> dict[str, Any]:
    return gpu_ask(environment, gpus, **({"reason": f"training run {environment}"} | extra))


@pytest.fixture
def fleet(api: Api, db: sessionmaker[Session]) -> dict[str, Api]:
    """Tenants acme (project llm) and other; the pool: two H100 servers of 8 GPUs."""
    make_tenant(db, "acme", "llm")
    make_tenant(db, "other")
    api.ok(IMPORT, d=json.dumps({"devices": [h100_server("h100-0"), h100_server("h100-1")]}))
    return {
        "platform": api,
        "provisioner": api.as_(make_token(db, "provisioner", "acme")),
        "admin": api.as_(make_token(db, "partner-admin", "acme")),
        "viewer": api.as_(make_token(db, "viewer", "acme")),
        "other": api.as_(make_token(db, "provisioner", "other")),
        "other-admin": api.as_(make_token(db, "partner-admin", "other")),
    }


def _request(caller: Api, environment: str, gpus: int = 8, **extra: Any) -> dict[str, Any]:
    answer: dict[str, Any] = caller.ok(REQUEST, i=_ask(environment, gpus, **extra))[
        "requestDevices"
    ]
    return answer


# -- submission and approval ---------------------------------------------------------------


def test_a_provisioners_request_waits_for_approval_and_is_fulfilled_once_approved(
    fleet: dict[str, Api],
) -> None:
    asked = _request(fleet["provisioner"], "train-1", project="llm")
    assert asked["state"] == "PENDING_APPROVAL"
    assert (asked["tenant"], asked["project"], asked["gpus"]) == ("acme", "llm", 8)
    assert asked["allocation"] is None and asked["decidedBy"] is None
    approved = fleet["admin"].ok(APPROVE, id=asked["id"], n="go ahead")["approveRequest"]
    assert approved["state"] == "FULFILLED"
    assert approved["decidedBy"] and approved["note"] == "go ahead"
    assert approved["allocation"]["environment"] == "train-1"
    assert approved["allocation"]["state"] == "ACTIVE"
    assert [d["gpus"] for d in approved["allocation"]["devices"]] == [8]
    # The requester reads it fulfilled, with its funnel.
    read = fleet["provisioner"].ok(ONE, id=asked["id"])["provisionRequest"]
    assert read["state"] == "FULFILLED" and read["explanation"]["steps"]


def test_an_admins_own_request_and_the_policy_approve_at_once(fleet: dict[str, Api]) -> None:
    assert _request(fleet["admin"], "by-admin", 1)["state"] == "FULFILLED"
    fleet["admin"].ok(POLICY, i={"tenant": "acme", "maxGpus": 4})
    small = _request(fleet["provisioner"], "small", 4)
    assert (small["state"], small["decidedBy"]) == ("FULFILLED", "policy")
    big = _request(fleet["provisioner"], "big", 8)
    assert big["state"] == "PENDING_APPROVAL"
    # A project listed in the policy is approved whatever its size.
    fleet["admin"].ok(POLICY, i={"tenant": "acme", "maxGpus": 4, "projects": ["llm"]})
    by_project = _request(fleet["provisioner"], "llm-big", 8, project="llm")
    assert by_project["decidedBy"] == "policy"


def test_who_may_ask_decide_and_cancel(fleet: dict[str, Api]) -> None:
    error = fleet["viewer"].error(REQUEST, i=_ask("v"))
    assert error["extensions"]["code"] == "FORBIDDEN"
    asked = _request(fleet["provisioner"], "train-1")
    # A provisioner does not approve, even its own request.
    error = fleet["provisioner"].error(APPROVE, id=asked["id"])
    assert error["extensions"]["code"] == "FORBIDDEN"
    # Another tenant does not learn that the request exists.
    for caller in ("other", "other-admin"):
        for query in (APPROVE, REJECT, CANCEL, ONE):
            error = fleet[caller].error(query, id=asked["id"])
            assert error["extensions"]["code"] == "NOT_FOUND", (caller, query)
            assert "acme" not in error["message"]
    assert fleet["other"].ok(LIST)["provisionRequests"] == []
    # The platform sees and decides every tenant's.
    assert [r["id"] for r in fleet["platform"].ok(LIST)["provisionRequests"]] == [asked["id"]]
    rejected = fleet["platform"].ok(REJECT, id=asked["id"], n="not this quarter")
    assert rejected["rejectRequest"]["state"] == "REJECTED"


def test_moves_the_state_machine_lacks_are_refused_naming_the_state(
    fleet: dict[str, Api],
) -> None:
    asked = _request(fleet["provisioner"], "train-1")
    fleet["admin"].ok(REJECT, id=asked["id"])
    for query in (APPROVE, REJECT, CANCEL):
        error = fleet["admin"].error(query, id=asked["id"])
        assert error["extensions"]["code"] == "BAD_INPUT"
        assert "REJECTED" in error["message"]
    done = _request(fleet["admin"], "train-2")
    assert done["state"] == "FULFILLED"
    error = fleet["admin"].error(CANCEL, id=done["id"])
    assert "release" in error["message"]


def test_bad_input_is_refused_naming_the_field_and_nothing_is_recorded(
    fleet: dict[str, Api],
) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"reason": "  "}, "reason"),
        ({"reason": "x" * 2001}, "reason"),
        ({"environment": ""}, "environment"),
        ({"priority": 10**7}, "priority"),
        ({"ttlSeconds": 0}, "ttlSeconds"),
        ({"project": "nope"}, "nope"),
        ({"variables": {"gpu": "many"}}, "gpu"),
    ]
    for change, named in cases:
        error = fleet["provisioner"].error(REQUEST, i={**_ask("e"), **change})
        assert named in error["message"], (change, error)
    assert fleet["platform"].ok(LIST)["provisionRequests"] == []


def test_one_open_request_per_environment(fleet: dict[str, Api]) -> None:
    first = _request(fleet["provisioner"], "train-1")
    error = fleet["provisioner"].error(REQUEST, i=_ask("train-1", 4))
    assert error["extensions"]["code"] == "ENVIRONMENT_IN_USE"
    assert first["id"] in error["message"]
    # Another tenant's environment of the same name is its own.
    assert _request(fleet["other"], "train-1")["state"] == "PENDING_APPROVAL"
    fleet["provisioner"].ok(CANCEL, id=first["id"])
    assert _request(fleet["provisioner"], "train-1")["state"] == "PENDING_APPROVAL"


def test_approving_a_request_whose_environment_was_taken_meanwhile_queues_it(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    asked = _request(fleet["provisioner"], "train-1", 8)
    # The same environment allocated by a direct matchDevice, with a different request.
    fleet["provisioner"].ok(
        MATCH, i={"environment": "train-1", "labels": capacity_labels(), "variables": {"gpu": "4"}}
    )
    approved = fleet["admin"].ok(APPROVE, id=asked["id"])["approveRequest"]
    assert (approved["state"], approved["lastErrorCode"]) == ("QUEUED", "ENVIRONMENT_IN_USE")
    fleet["provisioner"].ok(RELEASE, e="train-1")
    serve_round(db)
    assert fleet["provisioner"].ok(ONE, id=asked["id"])["provisionRequest"]["state"] == (
        "FULFILLED"
    )


def test_pending_requests_expire(fleet: dict[str, Api], db: sessionmaker[Session]) -> None:
    asked = _request(fleet["provisioner"], "train-1")
    assert serve_round(db, approval_ttl=timedelta(hours=1)).expired == 0
    assert serve_round(db, timedelta(hours=2), approval_ttl=timedelta(hours=1)).expired == 1
    assert fleet["provisioner"].ok(ONE, id=asked["id"])["provisionRequest"]["state"] == "EXPIRED"
    error = fleet["admin"].error(APPROVE, id=asked["id"])
    assert "EXPIRED" in error["message"]


def test_a_request_waits_for_its_start(fleet: dict[str, Api], db: sessionmaker[Session]) -> None:
    later = (utcnow() + timedelta(hours=1)).isoformat()
    asked = _request(fleet["admin"], "tomorrow", startsAt=later)
    assert (asked["state"], asked["allocation"]) == ("APPROVED", None)
    assert serve_round(db).fulfilled == []
    assert serve_round(db, timedelta(hours=2)).fulfilled == [asked["id"]]


# -- the queue ---------------------------------------------------------------------------------


def _fill(fleet: dict[str, Api], *environments: str, **extra: Any) -> None:
    """Take the whole pool, one server per environment, as the platform for ``other``."""
    for environment in environments:
        fleet["platform"].ok(
            MATCH,
            i={
                "environment": environment,
                "labels": capacity_labels(),
                "variables": {"gpu": "8"},
                "tenant": "other",
                **extra,
            },
        )


def test_a_request_that_does_not_fit_queues_and_is_fulfilled_when_capacity_frees(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _fill(fleet, "o-1", "o-2")
    asked = _request(fleet["admin"], "train-1")
    assert (asked["state"], asked["lastErrorCode"], asked["queuePosition"]) == (
        "QUEUED",
        "NO_MATCH",
        1,
    )
    assert serve_round(db).fulfilled == []
    fleet["other"].ok(RELEASE, e="o-1")
    assert serve_round(db).fulfilled == [asked["id"]]
    read = fleet["admin"].ok(ONE, id=asked["id"])["provisionRequest"]
    assert (read["state"], read["queuePosition"], read["lastError"]) == ("FULFILLED", None, None)


def test_higher_priority_first_then_the_smaller_share_then_age(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _fill(fleet, "o-1", "o-2")
    old_low = _request(fleet["admin"], "low", priority=1)
    new_high = _request(fleet["admin"], "high", priority=5)
    positions = {
        r["environment"]: r["queuePosition"] for r in fleet["admin"].ok(LIST)["provisionRequests"]
    }
    assert positions == {"high": 1, "low": 2}
    fleet["other"].ok(RELEASE, e="o-1")
    assert serve_round(db).fulfilled == [new_high["id"]]
    fleet["other"].ok(RELEASE, e="o-2")
    assert serve_round(db).fulfilled == [old_low["id"]]


def test_equal_priorities_go_to_the_tenant_holding_less_of_its_quota(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    platform = fleet["platform"]
    for tenant in ("acme", "other"):
        platform.ok(
            "mutation($i: QuotaInput!) { setQuota(input: $i) { tenant } }",
            i={"tenant": tenant, "gpus": 16},
        )
    # acme already holds one server (8 of its 16 GPUs); other holds nothing.
    fleet["admin"].ok(
        MATCH, i={"environment": "held", "labels": capacity_labels(), "variables": {"gpu": "8"}}
    )
    platform.ok(
        MATCH, i={"environment": "blocker", "labels": capacity_labels(), "variables": {"gpu": "8"}}
    )
    acme_first = _request(fleet["admin"], "acme-next")  # older
    other_second = _request(fleet["other-admin"], "other-next")
    assert acme_first["state"] == other_second["state"] == "QUEUED"
    platform.ok(RELEASE, e="blocker")
    assert serve_round(db).fulfilled == [other_second["id"]]


def test_backfill_lets_a_small_request_pass_until_the_head_has_waited_the_window(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    fleet["platform"].ok(
        MATCH,
        i={"environment": "half", "labels": capacity_labels(), "variables": {"gpu": "8"}},
    )
    # Two whole servers are wanted: only one is free; a 1-GPU slice would fit.
    big = _request(
        fleet["admin"],
        "big",
        priority=1,
        labels={
            "paas.envmgmt.io/inventory": "baremetal",
            "paas.envmgmt.io/inventory.config": json.dumps(
                [
                    {
                        "type": "capacity",
                        "keyInVariable": "nodes",
                        "keyInCapacity": "requiredNoofNodes",
                    }
                ]
            ),
        },
        variables={"nodes": "2"},
    )
    assert big["state"] == "QUEUED"
    first = _request(fleet["admin"], "small-1", 1)
    assert first["state"] == "FULFILLED"  # backfilled: the head has not waited long
    fleet["admin"].ok(RELEASE, e="small-1")
    serve_round(db)  # the head is noted blocked from now
    window = timedelta(minutes=10)
    later = _request(fleet["admin"], "small-2", 1)
    assert later["state"] == "FULFILLED"
    fleet["admin"].ok(RELEASE, e="small-2")
    third = _request(fleet["admin"], "small-3", 1, startsAt=(utcnow() + window * 2).isoformat())
    # After the window, the head holds the queue: the small one behind waits.
    done = serve_round(db, window * 3, backfill_window=window)
    assert third["id"] not in done.fulfilled
    assert fleet["admin"].ok(ONE, id=third["id"])["provisionRequest"]["state"] in (
        "APPROVED",
        "QUEUED",
    )
    # Once the head fits, it goes, and then the rest.
    fleet["platform"].ok(RELEASE, e="half")
    assert serve_round(db, window * 3, backfill_window=window).fulfilled[0] == big["id"]


# -- preemption ------------------------------------------------------------------------------


def test_a_higher_priority_request_preempts_with_notice_and_takes_the_devices(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _fill(fleet, "o-1", preemptible=True, priority=0)
    _fill(fleet, "o-2", priority=0)  # not preemptible: never a victim
    asked = _request(fleet["admin"], "urgent", priority=10)
    assert asked["state"] == "QUEUED"
    done = serve_round(db)
    assert len(done.preempting) == 1
    seen = {
        e["node"]["environment"]: e["node"]
        for e in fleet["other"].ok(ALLOCATIONS)["allocations"]["edges"]
    }
    assert seen["o-1"]["state"] == "PREEMPTING" and seen["o-1"]["preemptAt"]
    assert seen["o-2"]["state"] == "ACTIVE"
    # acme does not see other's victims.
    assert fleet["admin"].ok(ALLOCATIONS)["allocations"]["edges"] == []
    victim_host = seen["o-1"]["devices"][0]["hostname"]
    # During the grace period nobody else gets the devices: they are still held.
    assert serve_round(db, timedelta(seconds=60)).preempted == []
    done = serve_round(db, timedelta(seconds=301))
    assert done.preempted and asked["id"] not in done.fulfilled  # fulfilled by the take-over
    read = fleet["admin"].ok(ONE, id=asked["id"])["provisionRequest"]
    assert read["state"] == "FULFILLED"
    assert [d["hostname"] for d in read["allocation"]["devices"]] == [victim_host]
    remaining = [
        e["node"]["environment"] for e in fleet["other"].ok(ALLOCATIONS)["allocations"]["edges"]
    ]
    assert remaining == ["o-2"]


def test_a_cancelled_request_spares_its_victims(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _fill(fleet, "o-1", "o-2", preemptible=True)
    asked = _request(fleet["admin"], "urgent", priority=10)
    assert len(serve_round(db).preempting) == 1
    fleet["admin"].ok(CANCEL, id=asked["id"])
    states = {
        e["node"]["environment"]: e["node"]["state"]
        for e in fleet["other"].ok(ALLOCATIONS)["allocations"]["edges"]
    }
    assert states == {"o-1": "ACTIVE", "o-2": "ACTIVE"}
    assert serve_round(db, timedelta(seconds=301)).preempted == []


def test_equal_priority_never_preempts(fleet: dict[str, Api], db: sessionmaker[Session]) -> None:
    _fill(fleet, "o-1", "o-2", preemptible=True, priority=3)
    _request(fleet["admin"], "same", priority=3)
    assert serve_round(db).preempting == []


def test_the_allocations_state_filter_agrees_with_each_allocations_state(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    """One allocation in each state; filtering by each state finds exactly it (the filter
    is SQL, Allocation.state is Python: api/db/allocation_query.in_state)."""
    _fill(fleet, "released")
    fleet["other"].ok(RELEASE, e="released")
    _fill(fleet, "victim", preemptible=True)
    _fill(fleet, "active")
    asked = _request(fleet["admin"], "urgent", priority=10)
    assert asked["state"] == "QUEUED"
    serve_round(db)  # "victim" is PREEMPTING
    by_state = """query($s: AllocationState) { allocations(filter: {state: $s}) {
      edges { node { environment state } } } }"""

    def found(state: str) -> list[tuple[str, str]]:
        edges = fleet["platform"].ok(by_state, s=state)["allocations"]["edges"]
        return sorted((e["node"]["environment"], e["node"]["state"]) for e in edges)

    assert found("PREEMPTING") == [("victim", "PREEMPTING")]
    assert found("ACTIVE") == [("active", "ACTIVE")]
    assert found("RELEASED") == [("released", "RELEASED")]
    assert found("PREEMPTED") == []
    serve_round(db, timedelta(seconds=301))
    assert found("PREEMPTED") == [("victim", "PREEMPTED")]
    assert found("RELEASED") == [("released", "RELEASED")]
    assert found("ACTIVE") == [("active", "ACTIVE"), ("urgent", "ACTIVE")]


def test_a_request_within_its_quota_reclaims_borrowed_gpus_whatever_the_priorities(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    """DESIGN.md: borrowed capacity is lent until its owner's quota wants it back; a
    request over its own quota preempts nothing."""
    set_quota = "mutation($i: QuotaInput!) { setQuota(input: $i) { tenant } }"
    fleet["platform"].ok(set_quota, i={"tenant": "other", "gpus": 0})
    fleet["platform"].ok(set_quota, i={"tenant": "acme", "gpus": 8})
    _fill(fleet, "b-1", "b-2", preemptible=True, priority=5)  # borrowed: beyond other's 0
    borrowed = (
        """{ allocations(filter: {active: true}) { edges { node { environment borrowed } } } }"""
    )
    edges = fleet["platform"].ok(borrowed)["allocations"]["edges"]
    assert {e["node"]["borrowed"] for e in edges} == {True}
    # Over its own quota (16 GPUs asked, 8 allowed): waits, preempts nothing.
    over = _request(fleet["admin"], "over", 8, priority=0, labels={
        "paas.envmgmt.io/inventory": "baremetal",
        "paas.envmgmt.io/inventory.config": json.dumps(
            [{"type": "capacity", "keyInVariable": "nodes", "keyInCapacity": "requiredNoofNodes"}]
        ),
    }, variables={"nodes": "2"})  # fmt: skip
    assert over["state"] == "QUEUED"
    assert serve_round(db).preempting == []
    fleet["admin"].ok(CANCEL, id=over["id"])
    # Within it, at a lower priority than the borrower's: one borrowed server is reclaimed.
    within = _request(fleet["admin"], "within", 8, priority=0)
    assert within["state"] == "QUEUED"
    assert len(serve_round(db).preempting) == 1
    assert serve_round(db, timedelta(seconds=301)).preempted
    assert fleet["admin"].ok(ONE, id=within["id"])["provisionRequest"]["state"] == "FULFILLED"
