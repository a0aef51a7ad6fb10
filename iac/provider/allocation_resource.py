"""The resource gpuinv_allocation: devices held for an environment while it exists.

Create is matchDevice, delete is releaseAllocation, and read (and import) looks up the
active allocation by its environment, the idempotency key. Every request argument forces
replacement, so an allocation is never changed in place: preemptible and priority too, since
the API takes another preemptible or priority for the same environment as another request.
`borrowed` says whether the allocation was admitted beyond its tenant's GPU quota.

Preemption shows on refresh: an allocation being preempted (PREEMPTING) stays in the state
with a warning naming when it goes; one released or preempted leaves the state, so the next
plan creates it again.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from tf import schema, types
from tf.iface import (
    Config,
    CreateContext,
    DeleteContext,
    ImportContext,
    ReadContext,
    State,
    UpdateContext,
)
from tf.provider import Diagnostics, Resource
from tf.types import Unknown

from iac.client import ALLOCATION_FIELDS, ApiError, Inventory
from iac.provider.device_summaries import device_summaries, devices_attribute
from iac.provider.inventory_calls import configured_inventory, report_api_error
from iac.provider.match_request import (
    PREEMPTIBLE,
    PRIORITY,
    check_request,
    match_input,
    request_attributes,
)

if TYPE_CHECKING:  # only for the annotation: provider.py imports this module
    from iac.provider.provider import GpuInventoryProvider

# The active allocation of an environment, with where it is in its life (Allocation.state).
ACTIVE_WITH_STATE = f"""query($e: String!, $t: String) {{
  allocations(filter: {{environment: $e, active: true, tenant: $t}}, first: 1) {{
    edges {{ node {{ {ALLOCATION_FIELDS} state preemptAt }} }} }} }}"""
# Allocation states that no longer hold devices: such an allocation leaves the state.
GONE = ("RELEASED", "PREEMPTED")


class AllocationResource(Resource):
    """gpuinv_allocation: devices held for an environment while the resource exists."""

    def __init__(self, provider: GpuInventoryProvider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "allocation"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                *request_attributes(replace=True),
                schema.Attribute("environment", types.String(), optional=True, computed=True,
                                 requires_replace=True,
                                 description="The idempotency key; default gpuinv-<uuid>."),
                schema.Attribute("allocation_id", types.String(), computed=True),
                schema.Attribute("device_details", types.String(), computed=True,
                                 description="The API's deviceDetails, as a JSON string."),
                devices_attribute(),
                schema.Attribute("borrowed", types.Bool(), computed=True,
                                 description="Admitted beyond the tenant's GPU quota "
                                             "(preemptible): its GPUs count as borrowed."),
            ]
        )  # fmt: skip

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        check_request(diags, config)

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        environment = _known(planned.get("environment")) or f"gpuinv-{uuid.uuid4()}"
        try:
            answer = inventory.match(match_input(planned, environment, dry_run=False))
        except ApiError as exc:
            report_api_error(ctx.diagnostics, "matchDevice", exc)
            return None
        return _state(planned, answer["allocation"])

    def read(self, ctx: ReadContext, current: State) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return current
        try:
            found = _active_with_state(inventory, current["environment"], current.get("tenant"))
        except ApiError as exc:
            report_api_error(ctx.diagnostics, "reading the allocation", exc)
            return current
        if found is None or found["state"] in GONE:
            return None  # released or preempted elsewhere: the next plan creates it again
        warn_if_preempting(ctx.diagnostics, found)
        return _state(current, found)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        return planned  # every request argument forces replacement: nothing to update

    def delete(self, ctx: DeleteContext, current: State) -> None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return
        try:
            inventory.release(current["environment"], current.get("tenant"))
        except ApiError as exc:
            report_api_error(ctx.diagnostics, "releaseAllocation", exc)

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        try:
            found = inventory.active(id, None)
        except ApiError as exc:
            report_api_error(ctx.diagnostics, "reading the allocation", exc)
            return None
        if found is None:
            ctx.diagnostics.add_error(f"gpuinv: no active allocation for environment {id!r}")
            return None
        base: dict[str, Any] = {
            attribute.name: None for attribute in request_attributes(replace=True)
        }
        base["profile"] = found.get("profile")
        base["variables"] = {k: _as_text(v) for k, v in (found.get("variables") or {}).items()}
        # the API's defaults as a configuration that leaves them out has them: null
        base["preemptible"] = found["preemptible"] or None
        base["priority"] = found["priority"] or None
        return _state(base, found)

    def upgrade(self, ctx: Any, version: int, old: State) -> State | None:
        return old  # schema version 0 only: nothing to upgrade


def warn_if_preempting(diags: Diagnostics, allocation: dict[str, Any]) -> None:
    """A PREEMPTING allocation still holds its devices, so it stays in the state; the
    warning says when it will not, so that work on it can be wound down in time."""
    if allocation.get("state") != "PREEMPTING":
        return
    diags.add_warning(  # the environment in the summary: Terraform folds equal summaries
        f"gpuinv: {allocation['environment']}: this allocation is being preempted and will "
        f"be released at {allocation['preemptAt']}",
        f"Allocation {allocation['id']} of environment {allocation['environment']!r} is "
        "marked PREEMPTING, for a queued request of higher priority (or to reclaim borrowed "
        "GPUs): wind its work down by then. Once it is released, the next plan creates it "
        "again.",
    )


def _active_with_state(
    inventory: Inventory, environment: str, tenant: str | None
) -> dict[str, Any] | None:
    answer = inventory.run("allocations", ACTIVE_WITH_STATE, e=environment, t=tenant)
    edges = answer["allocations"]["edges"]
    return edges[0]["node"] if edges else None


def _known(value: Any) -> Any:
    """A planned value, or None while Terraform does not know it yet."""
    return None if value is Unknown else value


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _state(request: State, allocation: dict[str, Any]) -> State:
    state = dict(request)
    state["environment"] = allocation["environment"]
    state["allocation_id"] = allocation["id"]
    state["device_details"] = json.dumps(allocation["deviceDetails"], sort_keys=True)
    state["devices"] = device_summaries(allocation["deviceDetails"])
    state["borrowed"] = allocation["borrowed"]
    # As configured while the inventory agrees (false and null are one request); what the
    # inventory holds when it does not, so that the plan replaces it.
    for name, kind in (("preemptible", PREEMPTIBLE), ("priority", PRIORITY)):
        if not kind.semantically_equal(state.get(name), allocation[name]):
            state[name] = allocation[name]
    return state
