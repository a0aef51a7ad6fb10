"""Provision requests and preemption in the outbox (DESIGN.md "Events"): every move of a
request writes io.gpuinv.request.<state> in the move's own transaction, its ``subject``
the request's id and its ``data`` the request; a preemption tells the victim's tenant,
and only it, with io.gpuinv.allocation.preempting and, at the deadline,
io.gpuinv.allocation.preempted; without a webhook that may want them, nothing is written.

Both backends, through the real server; queue rounds are run by the test
(request_queue.serve). The webhooks are written straight to the database, as in
tests/api/test_events_outbox.py: the outbox only asks whether one exists.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import provision_request as requests_db
from api.db.models import EventRow, TenantRow, WebhookRow
from api.db.session import unit_of_work
from tests.support.api import Api, make_tenant, make_token
from tests.support.queue import gpu_ask, h100_server, serve_round

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
FIELDS = """id state environment tenant project profile priority preemptible gpus reason
  startsAt requestedBy requestedAt decidedBy decidedAt note lastError lastErrorCode
  allocation { id }"""
REQUEST = f"mutation($i: ProvisionRequestInput!) {{ requestDevices(input: $i) {{ {FIELDS} }} }}"
APPROVE = f"mutation($id: ID!, $n: String) {{ approveRequest(id: $id, note: $n) {{ {FIELDS} }} }}"
REJECT = f"mutation($id: ID!, $n: String) {{ rejectRequest(id: $id, note: $n) {{ {FIELDS} }} }}"
CANCEL = f"mutation($id: ID!) {{ cancelRequest(id: $id) {{ {FIELDS} }} }}"
ONE = f"query($id: ID!) {{ provisionRequest(id: $id) {{ {FIELDS} }} }}"
MATCH = "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"
ALLOCATIONS = """{ allocations(filter: {active: true}) { edges { node {
  id environment state preemptAt } } } }"""
TTL = timedelta(hours=1)
GRACE = timedelta(seconds=300)
# A request's fields that no move changes, by their GraphQL names.
STABLE = ("id", "environment", "tenant", "project", "profile", "priority", "preemptible",
          "gpus", "reason", "startsAt", "requestedBy", "requestedAt")  # fmt: skip


@pytest.fixture
def fleet(api: Api, db: sessionmaker[Session]) -> dict[str, Api]:
    """Tenants acme (project llm), other and third; two 8-GPU servers in the pool."""
    make_tenant(db, "acme", "llm")
    make_tenant(db, "other")
    make_tenant(db, "third")
    api.ok(IMPORT, d=json.dumps({"devices": [h100_server("gpu-0"), h100_server("gpu-1")]}))
    return {
        "platform": api,
        "provisioner": api.as_(make_token(db, "provisioner", "acme")),
        "admin": api.as_(make_token(db, "partner-admin", "acme")),
        "owner": api.as_(make_token(db, "provisioner", "other")),
    }


def _webhook(db: sessionmaker[Session], tenant: str | None) -> None:
    with unit_of_work(db) as session:
        tenant_id = session.scalar(select(TenantRow.id).where(TenantRow.slug == tenant))
        hook = WebhookRow(url="https://example.test/h", secret="x", events=[], created_by="t")
        hook.tenant_id = tenant_id
        session.add(hook)


def _events(db: sessionmaker[Session]) -> list[tuple[str, str, str | None, Any]]:
    """The outbox in order: (type without io.gpuinv., subject, tenant slug, data)."""
    with db() as session:
        slugs = {t.id: t.slug for t in session.execute(select(TenantRow.id, TenantRow.slug))}
        rows = session.scalars(select(EventRow).order_by(EventRow.seq))
        return [(e.type[10:], e.subject, slugs.get(e.tenant_id), e.data) for e in rows]


def _ask(caller: Api, environment: str, **extra: Any) -> dict[str, Any]:
    given = gpu_ask(environment, **({"reason": f"run {environment}"} | extra))
    asked: dict[str, Any] = caller.ok(REQUEST, i=given)["requestDevices"]
    return asked


def _hold(platform: Api, environment: str, **extra: Any) -> None:
    given = gpu_ask(environment, **({"tenant": "other"} | extra))
    platform.ok(MATCH, i=given)


def _serve(db: sessionmaker[Session], after: timedelta = timedelta(0)) -> Any:
    return serve_round(db, after, grace=GRACE, approval_ttl=TTL)


def _plain(field: str, value: Any) -> Any:
    return datetime.fromisoformat(value) if value and field.endswith("At") else value


def _same_request(data: dict[str, Any], read: dict[str, Any], state: str, last: bool) -> None:
    """``data`` is the request as it was when its event was written, in ``state``;
    ``read`` is the request as GraphQL renders it after the call (``last``: the call's
    last move, so every field must agree)."""
    for field in STABLE:
        assert _plain(field, data[field]) == _plain(field, read[field]), field
    assert data["state"] == state
    if last:
        assert data["state"] == read["state"]
        for field in ("decidedBy", "decidedAt", "note"):
            assert _plain(field, data[field]) == _plain(field, read[field]), field
        allocation = read["allocation"]["id"] if read["allocation"] else None
        assert data["allocationId"] == allocation


def _moves(db: sessionmaker[Session], seen: list[Any], read: dict[str, Any],
           *moves: tuple[str, str]) -> None:  # fmt: skip
    """The request events written since the last look are ``moves`` ((type, the state in
    data), in order), of the request ``read``, to acme."""
    found = [e for e in _events(db) if e[0].startswith("request.")]
    fresh, seen[:] = found[len(seen) :], found
    assert [(kind[8:], data["state"]) for kind, _, _, data in fresh] == list(moves)
    for n, (_, subject, tenant, data) in enumerate(fresh):
        assert (subject, tenant) == (read["id"], "acme")
        _same_request(data, read, moves[n][1], last=n == len(fresh) - 1)


# -- the moves ------------------------------------------------------------------------------------


def test_each_move_writes_its_event_with_the_request(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _webhook(db, "acme")
    provisioner, admin, seen = fleet["provisioner"], fleet["admin"], list[Any]()
    asked = _ask(provisioner, "a", project="llm")
    _moves(db, seen, asked, ("submitted", "PENDING_APPROVAL"))
    read = admin.ok(APPROVE, id=asked["id"], n="go")["approveRequest"]
    _moves(db, seen, read, ("approved", "APPROVED"), ("fulfilled", "FULFILLED"))
    asked = _ask(provisioner, "b")
    _moves(db, seen, asked, ("submitted", "PENDING_APPROVAL"))
    read = admin.ok(REJECT, id=asked["id"], n="no")["rejectRequest"]
    _moves(db, seen, read, ("rejected", "REJECTED"))
    for refused in (APPROVE, REJECT, CANCEL):  # a move refused writes nothing
        assert admin.error(refused, id=asked["id"])["extensions"]["code"] == "BAD_INPUT"
    _moves(db, seen, read)
    _hold(fleet["platform"], "o-1")  # the pool is full now
    asked = _ask(provisioner, "c")
    _moves(db, seen, asked, ("submitted", "PENDING_APPROVAL"))
    read = admin.ok(APPROVE, id=asked["id"])["approveRequest"]
    _moves(db, seen, read, ("approved", "APPROVED"), ("queued", "QUEUED"))
    read = provisioner.ok(CANCEL, id=asked["id"])["cancelRequest"]
    _moves(db, seen, read, ("cancelled", "CANCELLED"))
    asked = _ask(provisioner, "d")
    _moves(db, seen, asked, ("submitted", "PENDING_APPROVAL"))
    assert _serve(db, 2 * TTL).expired == 1
    _moves(
        db, seen, provisioner.ok(ONE, id=asked["id"])["provisionRequest"], ("expired", "EXPIRED")
    )
    # An admin's own request is approved as it is submitted; a round fulfils it.
    asked = _ask(admin, "e")
    _moves(
        db, seen, asked, ("submitted", "APPROVED"), ("approved", "APPROVED"), ("queued", "QUEUED")
    )
    fleet["platform"].ok(
        'mutation { releaseAllocation(environment: "o-1", tenant: "other") { id } }'
    )
    assert _serve(db).fulfilled == [asked["id"]]
    _moves(db, seen, admin.ok(ONE, id=asked["id"])["provisionRequest"], ("fulfilled", "FULFILLED"))
    assert {tenant for _, _, tenant, _ in _events(db)} == {"acme"}


def test_a_move_rolled_back_leaves_no_event(
    fleet: dict[str, Api], db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel's transaction fails after its move (a fault injected where it spares
    the victims, in the server's own process): its event goes with it."""
    _webhook(db, "acme")
    _hold(fleet["platform"], "o-0")
    _hold(fleet["platform"], "o-1")
    asked = _ask(fleet["admin"], "a")
    assert asked["state"] == "QUEUED"
    before = _events(db)

    def broken(*_: Any) -> int:
        raise RuntimeError("injected: the database went away")

    monkeypatch.setattr(requests_db, "spare_victims", broken)
    assert fleet["admin"].error(CANCEL, id=asked["id"])
    monkeypatch.undo()
    assert _events(db) == before
    assert fleet["admin"].ok(ONE, id=asked["id"])["provisionRequest"]["state"] == "QUEUED"


def test_a_queued_requests_event_renders_its_last_error_as_graphql_does(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    _webhook(db, "acme")
    _hold(fleet["platform"], "o-0")
    _hold(fleet["platform"], "o-1")
    read = _ask(fleet["admin"], "a")
    [queued] = [data for kind, _, _, data in _events(db) if kind == "request.queued"]
    assert (read["state"], read["lastErrorCode"]) == ("QUEUED", "NO_MATCH")
    assert queued["lastError"] == read["lastError"]


# -- preemption -----------------------------------------------------------------------------------


def _preempt(fleet: dict[str, Api], db: sessionmaker[Session]) -> str:
    """other holds the pool, one server preemptibly; acme's urgent request preempts it
    and, after the grace, takes it over. The request's id."""
    _hold(fleet["platform"], "o-1", preemptible=True)
    _hold(fleet["platform"], "o-2")
    asked = _ask(fleet["admin"], "urgent", priority=10)
    assert asked["state"] == "QUEUED"
    assert len(_serve(db).preempting) == 1
    return str(asked["id"])


def test_a_preemption_tells_the_victims_tenant_only(
    fleet: dict[str, Api], db: sessionmaker[Session]
) -> None:
    for slug in ("acme", "other", "third"):
        _webhook(db, slug)
    asked = _preempt(fleet, db)
    edges = fleet["owner"].ok(ALLOCATIONS)["allocations"]["edges"]
    [victim] = [e["node"] for e in edges if e["node"]["environment"] == "o-1"]
    [preempting] = [e for e in _events(db) if e[0] == "allocation.preempting"]
    assert preempting[1:3] == (victim["id"], "other")
    data = preempting[3]
    assert (data["state"], data["environment"]) == ("PREEMPTING", "o-1")
    assert _plain("preemptAt", data["preemptAt"]) == _plain("preemptAt", victim["preemptAt"])
    assert _serve(db, GRACE + timedelta(seconds=1)).preempted == [victim["id"]]
    [preempted] = [e for e in _events(db) if e[0] == "allocation.preempted"]
    assert preempted[1:3] == (victim["id"], "other")
    assert (preempted[3]["state"], preempted[3]["environment"]) == ("PREEMPTED", "o-1")
    assert preempted[3]["releasedAt"]
    found = _events(db)
    assert "third" not in {tenant for _, _, tenant, _ in found}
    for kind, _, tenant, data in found:
        if tenant == "other":  # the victim's owner learns nothing of who preempted it
            assert asked not in json.dumps(data) and "acme" not in json.dumps(data), kind
        else:  # and the requester nothing of its victims
            assert victim["id"] not in json.dumps(data) and "o-1" not in json.dumps(data), kind
    mine = [(kind, data["state"]) for kind, subject, _, data in found if subject == asked]
    assert mine == [("request.submitted", "APPROVED"), ("request.approved", "APPROVED"),
                    ("request.queued", "QUEUED"), ("request.fulfilled", "FULFILLED")]  # fmt: skip


@pytest.mark.parametrize("hooked", [None, "third"], ids=["no webhook", "another tenants"])
def test_without_a_webhook_that_may_want_them_nothing_is_written(
    fleet: dict[str, Api], db: sessionmaker[Session], hooked: str | None
) -> None:
    if hooked:
        _webhook(db, hooked)
    _preempt(fleet, db)
    assert _serve(db, GRACE + timedelta(seconds=1)).preempted
    pending = _ask(fleet["provisioner"], "p")
    fleet["admin"].ok(REJECT, id=pending["id"])
    fleet["provisioner"].ok(CANCEL, id=_ask(fleet["provisioner"], "q")["id"])
    _ask(fleet["provisioner"], "r")
    assert _serve(db, 2 * TTL).expired == 1
    assert _events(db) == []
