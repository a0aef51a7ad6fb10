"""The resource gpuinv_quota: a tenant's limit, or a project's inside it, as code.

For platform teams who manage tenants in Terraform. A quota is named by its tenant, its
project (none: the tenant's own limit) and its GPU model (none: every model); changing any
of the three is another quota, so it forces replacement. The limits (gpus, nodes) change in
place. Create and update are setQuota, delete is deleteQuota, read finds the quota in
quotas(tenant, project). The id, and the import id, is `tenant`, `tenant/project`,
`tenant/project/model` or `tenant//model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tf import schema, types
from tf.iface import (
    Config,
    CreateContext,
    DeleteContext,
    ImportContext,
    PlanContext,
    ReadContext,
    State,
    UpdateContext,
)
from tf.provider import Diagnostics, Resource
from tf.types import Unknown

from iac.client import ApiError, Inventory
from iac.provider.arguments import check_whole_number, whole
from iac.provider.inventory_calls import configured_inventory, report_api_error

if TYPE_CHECKING:  # only for the annotation: provider.py imports this module
    from iac.provider.provider import GpuInventoryProvider

ID_FORMS = "tenant, tenant/project, tenant/project/model or tenant//model"
USAGE = ("used_gpus", "used_nodes", "borrowed_gpus")
ARGUMENTS = ("tenant", "project", "gpu_model", "gpus", "nodes")
EMPTY = {  # what to write instead of an empty name
    "tenant": "Name a tenant by its slug.",
    "project": "Leave project out for the tenant's own limit.",
    "gpu_model": "Leave gpu_model out for a limit on every model.",
}


def model_key(model: str | None) -> str:
    """A GPU model as quotas compare it: trimmed, case-insensitive (none: every model)."""
    return (model or "").strip().casefold()


class GpuModel(types.String):
    """A GPU model name: `H100` and ` h100 ` name the same quota, so a change of spelling
    replaces nothing (the update records the new spelling)."""

    def semantically_equal(self, a_decoded: Any, b_decoded: Any) -> bool:
        if not isinstance(a_decoded, str) or not isinstance(b_decoded, str):
            return a_decoded is b_decoded
        return model_key(a_decoded) == model_key(b_decoded)


def quota_id(tenant: str, project: str | None, gpu_model: str | None) -> str:
    model = (gpu_model or "").strip()
    if model:
        return f"{tenant}/{project or ''}/{model}"
    return f"{tenant}/{project}" if project else tenant


def parse_id(id: str) -> tuple[str, str | None, str | None] | None:
    """``tenant[/project[/model]]`` (a model may hold slashes); None if it names no tenant."""
    tenant, _, rest = id.strip().partition("/")
    project, _, model = rest.partition("/")
    if not tenant:
        return None
    return tenant, project.strip() or None, model.strip() or None


class QuotaResource(Resource):
    """gpuinv_quota: a tenant's or a project's limits on GPUs and nodes held at once."""

    def __init__(self, provider: GpuInventoryProvider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "quota"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("id", types.String(), computed=True,
                                 description=f"The quota's name: {ID_FORMS}."),
                schema.Attribute("tenant", types.String(), required=True, requires_replace=True,
                                 description="A tenant slug."),
                schema.Attribute("project", types.String(), optional=True, requires_replace=True,
                                 description="A project of the tenant; none: the tenant's own "
                                             "limit."),
                schema.Attribute("gpu_model", GpuModel(), optional=True, requires_replace=True,
                                 description="A GPU modelNo (trimmed, any case); none: every "
                                             "model."),
                schema.Attribute("gpus", types.Number(), optional=True,
                                 description="Most GPUs held at once; none: no GPU limit."),
                schema.Attribute("nodes", types.Number(), optional=True,
                                 description="Most devices held whole at once; none: no node "
                                             "limit."),
                schema.Attribute("used_gpus", types.Number(), computed=True,
                                 description="GPUs held against the quota now."),
                schema.Attribute("used_nodes", types.Number(), computed=True,
                                 description="Devices held whole against the quota now."),
                schema.Attribute("borrowed_gpus", types.Number(), computed=True,
                                 description="GPUs that preemptible allocations borrow beyond "
                                             "the GPU limit."),
            ]
        )  # fmt: skip

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        for name in ("gpus", "nodes"):
            check_whole_number(diags, config, name, minimum=0)
        for name, instead in EMPTY.items():
            value = config.get(name)
            if isinstance(value, str) and not value.strip():
                diags.add_error(f"gpuinv: {name} is empty", instead, path=[name])
            elif isinstance(value, str) and name != "gpu_model" and "/" in value:
                diags.add_error(f"gpuinv: {name} may not hold '/', got {value!r}", path=[name])

    def plan(self, ctx: PlanContext, current: State | None, planned: State) -> State | None:
        # An update (setQuota) answers the usage of that moment, which may differ from the
        # last refresh's: say so in the plan rather than promise the old numbers.
        if current is not None and any(current.get(k) != planned.get(k) for k in ARGUMENTS):
            planned = dict(planned, **dict.fromkeys(USAGE, Unknown))
            planned["id"] = quota_id(
                planned["tenant"], planned.get("project"), planned.get("gpu_model")
            )
        return planned

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        return self._set(ctx.diagnostics, planned)

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        return self._set(ctx.diagnostics, planned)

    def _set(self, diags: Diagnostics, planned: State) -> State | None:
        inventory = configured_inventory(self.provider, diags)
        if inventory is None:
            return None
        given = {
            "tenant": planned["tenant"],
            "project": planned.get("project"),
            "gpuModel": planned.get("gpu_model"),
            "gpus": whole(planned.get("gpus")),
            "nodes": whole(planned.get("nodes")),
        }
        try:
            answer = inventory.set_quota(given)
        except ApiError as exc:
            report_api_error(diags, "setQuota", exc)
            return None
        return _state(planned, answer)

    def read(self, ctx: ReadContext, current: State) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return current
        try:
            found = _find(inventory, current["tenant"], current.get("project"),
                          current.get("gpu_model"))  # fmt: skip
        except ApiError as exc:
            if exc.code == "NOT_FOUND":  # the tenant or the project is gone, and its quotas
                return None
            report_api_error(ctx.diagnostics, "reading the quota", exc)
            return current
        # lifted outside Terraform: leave the state, so the next plan sets it again
        return _state(current, found, limits=True) if found else None

    def delete(self, ctx: DeleteContext, current: State) -> None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return
        try:
            inventory.delete_quota(current["tenant"], current.get("project"),
                                   current.get("gpu_model"))  # fmt: skip
        except ApiError as exc:
            if exc.code != "NOT_FOUND":  # a tenant or project deleted takes its quotas along
                report_api_error(ctx.diagnostics, "deleteQuota", exc)

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        parsed = parse_id(id)
        if parsed is None:
            ctx.diagnostics.add_error(
                f"gpuinv: cannot import quota {id!r}", f"The import id is {ID_FORMS}."
            )
            return None
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        tenant, project, model = parsed
        try:
            found = _find(inventory, tenant, project, model)
        except ApiError as exc:
            report_api_error(ctx.diagnostics, "reading the quota", exc)
            return None
        if found is None:
            ctx.diagnostics.add_error(
                f"gpuinv: no quota is set for {quota_id(tenant, project, model)!r}",
                f"The import id is {ID_FORMS}; the quotas set are listed by the API's "
                "quotas(tenant, project).",
            )
            return None
        base: State = {"tenant": tenant, "project": project, "gpu_model": model}
        return _state(base, found, limits=True)

    def upgrade(self, ctx: Any, version: int, old: State) -> State | None:
        return old  # schema version 0 only: nothing to upgrade


def _find(
    inventory: Inventory, tenant: str, project: str | None, gpu_model: str | None
) -> dict[str, Any] | None:
    """The quota set for exactly this tenant, project (or none) and model (or every)."""
    for quota in inventory.quotas(tenant, project):
        if quota["project"] == project and model_key(quota["gpuModel"]) == model_key(gpu_model):
            return quota
    return None


def _state(given: State, quota: dict[str, Any], limits: bool = False) -> State:
    """``given``'s arguments as they are (the model as spelt in the configuration), the
    usage from ``quota``; and its limits too when ``limits`` (a read: the inventory's word,
    so that a limit changed outside Terraform shows in the plan)."""
    state = dict(given)
    state["id"] = quota_id(state["tenant"], state.get("project"), state.get("gpu_model"))
    if limits:
        state["gpus"], state["nodes"] = quota["gpus"], quota["nodes"]
    state["used_gpus"] = quota["usedGpus"]
    state["used_nodes"] = quota["usedNodes"]
    state["borrowed_gpus"] = quota["borrowedGpus"]
    return state
