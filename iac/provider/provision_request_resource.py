"""The resource gpuinv_provision_request: devices asked for through a provision request,
which may wait (for an approval, for its starts_at, for capacity) before it is fulfilled.

Create is requestDevices, then a wait: provisionRequest(id) is read every few seconds until
the request is FULFILLED, and each change of its state, queue position or last error is
logged (Terraform shows a provider's log with TF_LOG=INFO), so a pending approval is a
waiting apply whose log names the request. REJECTED, CANCELLED and EXPIRED end the create
with an error naming who decided and their note. The wait is bounded by Terraform's own
`timeouts { create = "30m" }` block (a plain nested block to Terraform, read here). A
create that times out leaves the request open and nothing in the state; the next apply
looks for the environment's request before it asks, and adopts one that asks the same
(still open: it waits on; fulfilled meanwhile: it takes), rather than ask twice. That is
why `environment` is required here: it is what a later apply finds the request by.

Read keeps a fulfilled request while its allocation holds devices (warning while it is
being preempted), and drops it once the allocation is released or preempted, so the next
plan asks again. Destroy cancels an open request, or releases the allocation. Every
argument forces replacement: the API changes no request in place.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tf import schema, types
from tf.iface import (
    Config,
    CreateContext,
    DeleteContext,
    ReadContext,
    State,
    UpdateContext,
)
from tf.provider import Diagnostics, Resource
from tf.schema import Block, NestedBlock, NestMode

from iac.client import ApiError, Inventory
from iac.provider.allocation_resource import GONE, warn_if_preempting
from iac.provider.arguments import check_whole_number, whole
from iac.provider.device_summaries import device_summaries, devices_attribute
from iac.provider.inventory_calls import configured_inventory, report_api_error
from iac.provider.match_request import check_request, match_input, request_attributes

if TYPE_CHECKING:  # only for the annotation: provider.py imports this module
    from iac.provider.provider import GpuInventoryProvider

log = logging.getLogger("gpuinv.provider")

FIELDS = """id state environment profile labels variables priority preemptible tenant project
  startsAt requestedBy decidedBy note lastError lastErrorCode queuePosition
  allocation { id environment state preemptAt deviceDetails }"""
SUBMIT = f"mutation($i: ProvisionRequestInput!) {{ requestDevices(input: $i) {{ {FIELDS} }} }}"
READ = f"query($id: ID!) {{ provisionRequest(id: $id) {{ {FIELDS} }} }}"
# With the caller's tenant: a request's scope is the tenant asked for, else the token's.
BY_ENVIRONMENT = f"""query($e: String!, $t: String) {{ me {{ tenant }}
  provisionRequests(filter: {{environment: $e, tenant: $t}}) {{ {FIELDS} }} }}"""
CANCEL = "mutation($id: ID!) { cancelRequest(id: $id) { id state } }"

OPEN = ("PENDING_APPROVAL", "APPROVED", "QUEUED")
ENDED = ("REJECTED", "CANCELLED", "EXPIRED")
DEFAULT_CREATE_TIMEOUT = "30m"
POLL_SECONDS = 5.0  # GPUINV_REQUEST_POLL_SECONDS overrides it
STILL_WAITING_EVERY = 60.0  # seconds between log lines while nothing changes
# Terraform writes durations as Go does ("30m", "1h30m", "90s"); hours, minutes, seconds.
DURATION = re.compile(r"(\d+(?:\.\d+)?)([hms])")
UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
# Errors that say nothing about the request: polling goes on through them.
PASSING = ("UNREACHABLE", "HTTP_502", "HTTP_503", "HTTP_504")


class Timeouts(NestedBlock):
    """Terraform's `timeouts { create = "30m" }`: to Terraform only a nested block of one
    optional string (the `tf` framework has the block kinds but no single-block class)."""

    def __init__(self) -> None:
        create = schema.Attribute(
            "create", types.String(), optional=True,
            description=f"How long create waits for FULFILLED. Default {DEFAULT_CREATE_TIMEOUT}.",
        )  # fmt: skip
        super().__init__("timeouts", NestMode.Single, Block(attributes=[create]))

    def encode(self, value: Any) -> Any:
        return None if value is None else {"create": value.get("create")}

    def decode(self, value: Any) -> Any:
        return None if value is None else {"create": value.get("create")}

    def semantically_equal(self, a_decoded: Any, b_decoded: Any) -> bool:
        return bool(a_decoded == b_decoded)


def duration_seconds(text: str) -> float | None:
    """A Go duration ("30m", "1h30m", "45s") in seconds; None if it is not one."""
    parts = DURATION.findall(text.strip())
    if not parts or "".join(number + unit for number, unit in parts) != text.strip():
        return None
    return sum(float(number) * UNIT_SECONDS[unit] for number, unit in parts)


class ProvisionRequestResource(Resource):
    """gpuinv_provision_request: devices held through a request that may wait."""

    def __init__(self, provider: GpuInventoryProvider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "provision_request"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                *request_attributes(replace=True),
                schema.Attribute("environment", types.String(), required=True,
                                 requires_replace=True,
                                 description="The request's key: one open request per "
                                             "environment; a later apply finds it by this."),
                schema.Attribute("reason", types.String(), required=True, requires_replace=True,
                                 description="Why: shown to whoever approves it."),
                schema.Attribute("starts_at", types.String(), optional=True,
                                 requires_replace=True,
                                 description="RFC 3339: fulfil no earlier than this."),
                schema.Attribute("ttl_seconds", types.Number(), optional=True,
                                 requires_replace=True,
                                 description="Lease: the allocation is released this many "
                                             "seconds after it is made."),
                schema.Attribute("id", types.String(), computed=True,
                                 description="The provision request's id."),
                schema.Attribute("state", types.String(), computed=True,
                                 description="The request's state: FULFILLED once created."),
                schema.Attribute("allocation_id", types.String(), computed=True),
                schema.Attribute("device_details", types.String(), computed=True,
                                 description="The allocation's deviceDetails, as a JSON string."),
                devices_attribute(),
                schema.Attribute("requested_by", types.String(), computed=True),
                schema.Attribute("decided_by", types.String(), computed=True,
                                 description='Who approved it ("policy": the tenant\'s '
                                             "approval policy)."),
            ],
            block_types=[Timeouts()],
        )  # fmt: skip

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        check_request(diags, config)
        check_whole_number(diags, config, "ttl_seconds", minimum=1)
        starts_at = config.get("starts_at")
        if isinstance(starts_at, str) and not _is_rfc3339(starts_at):
            diags.add_error(
                f"gpuinv: starts_at must be an RFC 3339 time, got {starts_at!r}",
                'For example "2030-01-31T09:00:00Z" (or timeadd(timestamp(), "1h")).',
                path=["starts_at"],
            )
        create = (config.get("timeouts") or {}).get("create")
        if isinstance(create, str) and duration_seconds(create) is None:
            diags.add_error(
                f"gpuinv: timeouts.create must be a duration, got {create!r}",
                'For example "30m", "2h" or "1h30m".',
                path=["timeouts"],
            )

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        given = _request_input(planned)
        try:
            request = _earlier_request(inventory, given)
            if request is None:
                request = inventory.run("requestDevices", SUBMIT, i=given)["requestDevices"]
            else:
                log.info("gpuinv: provision request %s: adopted (asked by an earlier apply), %s",
                         request["id"], request["state"])  # fmt: skip
        except ApiError as exc:
            report_api_error(ctx.diagnostics, "requestDevices", exc)
            return None
        fulfilled = _wait(inventory, ctx.diagnostics, request, _create_timeout(planned))
        return _state(planned, fulfilled) if fulfilled else None

    def read(self, ctx: ReadContext, current: State) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return current
        try:
            request = inventory.run("provisionRequest", READ, id=current["id"])["provisionRequest"]
        except ApiError as exc:
            if exc.code == "NOT_FOUND":
                return None
            report_api_error(ctx.diagnostics, "reading the provision request", exc)
            return current
        allocation = request.get("allocation")
        if request["state"] != "FULFILLED" or not allocation or allocation["state"] in GONE:
            return None  # its devices went back (released, preempted): ask again
        warn_if_preempting(ctx.diagnostics, allocation)
        return _state(current, request)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        return planned  # every argument forces replacement; only `timeouts` changes here

    def delete(self, ctx: DeleteContext, current: State) -> None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return
        try:
            request = inventory.run("provisionRequest", READ, id=current["id"])["provisionRequest"]
            if request["state"] in OPEN:  # not from a create (it keeps only fulfilled ones)
                inventory.run("cancelRequest", CANCEL, id=current["id"])
            else:
                inventory.release(current["environment"], current.get("tenant"))
        except ApiError as exc:
            if exc.code != "NOT_FOUND":
                report_api_error(ctx.diagnostics, "withdrawing the provision request", exc)

    def upgrade(self, ctx: Any, version: int, old: State) -> State | None:
        return old  # schema version 0 only: nothing to upgrade


def _is_rfc3339(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _create_timeout(planned: State) -> str:
    """`timeouts.create`, checked at plan time to be a duration."""
    given: str = (planned.get("timeouts") or {}).get("create") or DEFAULT_CREATE_TIMEOUT
    return given


def _request_input(planned: State) -> dict[str, Any]:
    """requestDevices' input: the match gpuinv_allocation sends, and why and from when."""
    given = match_input(planned, planned["environment"], dry_run=False)
    del given["dryRun"]
    given["reason"] = planned["reason"]
    given["startsAt"] = planned.get("starts_at")
    given["ttlSeconds"] = whole(planned.get("ttl_seconds"))
    return given


def _earlier_request(inventory: Inventory, given: dict[str, Any]) -> dict[str, Any] | None:
    """The environment's request that an earlier apply made and left behind when it timed
    out, if it asks for just what this one does: still open (wait on it rather than ask
    twice: requestDevices would refuse with ENVIRONMENT_IN_USE), or fulfilled meanwhile
    and still holding its devices (nothing left to ask). Else None."""
    answer = inventory.run(
        "provisionRequests", BY_ENVIRONMENT, e=given["environment"], t=given.get("tenant")
    )
    scope = given.get("tenant") or answer["me"]["tenant"]
    requests: list[dict[str, Any]] = answer["provisionRequests"]
    for request in requests:
        allocation = request["allocation"] or {}
        holding = request["state"] == "FULFILLED" and allocation.get("state") not in (None, *GONE)
        mine = request["tenant"] == scope and _asks_the_same(request, given)
        if mine and (request["state"] in OPEN or holding):
            return request
    return None


def _asks_the_same(request: dict[str, Any], given: dict[str, Any]) -> bool:
    asked = {name: request.get(name) for name in ("profile", "labels", "variables", "project")}
    wanted = {name: given.get(name) for name in ("profile", "labels", "variables", "project")}
    same_terms = (request["priority"], request["preemptible"]) == (
        given["priority"],
        given["preemptible"],
    )
    return asked == wanted and same_terms


def _wait(
    inventory: Inventory, diags: Diagnostics, request: dict[str, Any], timeout: str
) -> dict[str, Any] | None:
    """Read the request until it is FULFILLED (answered) or ends or the time is up (an
    error diagnostic; None). Each change is logged at INFO, and a line a minute besides."""
    poll = float(os.environ.get("GPUINV_REQUEST_POLL_SECONDS") or POLL_SECONDS)
    deadline = time.monotonic() + (duration_seconds(timeout) or 0.0)
    said, said_at = "", 0.0
    while True:
        if request["state"] == "FULFILLED":
            log.info("gpuinv: provision request %s: FULFILLED", request["id"])
            return request
        if request["state"] in ENDED:
            _report_ended(diags, request)
            return None
        progress = _progress(request)
        now = time.monotonic()
        if progress != said or now - said_at >= STILL_WAITING_EVERY:
            log.info("gpuinv: provision request %s: %s", request["id"], progress)
            said, said_at = progress, now
        if now >= deadline:
            _report_timeout(diags, request, timeout)
            return None
        time.sleep(min(poll, deadline - now))
        try:
            request = inventory.run("provisionRequest", READ, id=request["id"])["provisionRequest"]
        except ApiError as exc:
            if exc.code not in PASSING:
                report_api_error(diags, f"reading provision request {request['id']}", exc)
                return None
            log.warning("gpuinv: provision request %s: %s (still waiting)", request["id"], exc)


def _progress(request: dict[str, Any]) -> str:
    """PENDING_APPROVAL; or QUEUED, its place in the queue and why its last try failed."""
    said = [request["state"]]
    if request["state"] == "PENDING_APPROVAL":
        said.append("waiting for approval by an admin of its tenant")
    if request["state"] == "APPROVED" and request.get("startsAt"):
        said.append(f"starts at {request['startsAt']}")
    if request.get("queuePosition") is not None:
        said.append(f"queue position {request['queuePosition']}")
    if request.get("lastErrorCode"):
        said.append(f"last try: {request['lastErrorCode']}: {request.get('lastError')}")
    return ", ".join(said)


def _report_ended(diags: Diagnostics, request: dict[str, Any]) -> None:
    by = f" by {request['decidedBy']}" if request.get("decidedBy") else ""
    note = f": {request['note']}" if request.get("note") else ""
    diags.add_error(
        f"gpuinv: provision request {request['id']} was {request['state']}{by}{note}",
        f"The request for environment {request['environment']!r} ended {request['state']} "
        "without devices. The next apply submits a new request.",
    )


def _report_timeout(diags: Diagnostics, request: dict[str, Any], timeout: str) -> None:
    diags.add_error(
        f"gpuinv: provision request {request['id']} is still {request['state']} after "
        f"{timeout} (timeouts.create); it stays open",
        f"Last seen: {_progress(request)}. The request is not withdrawn: the next apply "
        f"adopts it (same environment {request['environment']!r}, same request) and keeps "
        "waiting. To withdraw it: cancelRequest(id: "
        f'"{request["id"]}"). For a longer wait: timeouts {{ create = "2h" }}.',
    )


def _state(base: State, request: dict[str, Any]) -> State:
    allocation = request["allocation"]
    state = dict(base)
    state["id"] = request["id"]
    state["environment"] = request["environment"]
    state["state"] = request["state"]
    state["allocation_id"] = allocation["id"]
    state["device_details"] = json.dumps(allocation["deviceDetails"], sort_keys=True)
    state["devices"] = device_summaries(allocation["deviceDetails"])
    state["requested_by"] = request["requestedBy"]
    state["decided_by"] = request.get("decidedBy")
    return state
