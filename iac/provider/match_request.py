"""The request that gpuinv_allocation and gpuinv_match share.

The data source is a dry run of the resource: what an allocation with these arguments
would get now. So both take the same arguments (a saved or an inline profile, variables,
tenant, project, preemptible, priority), check them the same way at plan time, and send
the same matchDevice input; only whether a change forces replacement, and dryRun, differ.
"""

from __future__ import annotations

from typing import Any

from tf import schema, types
from tf.iface import Config, State
from tf.provider import Diagnostics

from iac.provider.arguments import Defaulted, check_whole_number, whole

# Left out, they are the API's defaults; written as the default, they are the same request.
PREEMPTIBLE = Defaulted(types.Bool(), False)
PRIORITY = Defaulted(types.Number(), 0)


def request_attributes(replace: bool) -> list[schema.Attribute]:
    return [
        schema.Attribute("profile", types.String(), optional=True, requires_replace=replace,
                         description="A saved profile (or inventory_type + inventory_config)."),
        schema.Attribute("inventory_type", types.String(), optional=True, requires_replace=replace,
                         description="baremetal | vm | vcluster | mks (inline profile)."),
        schema.Attribute("inventory_config", types.String(), optional=True,
                         requires_replace=replace,
                         description="The filter array as JSON (jsonencode([...]))."),
        schema.Attribute("variables", types.Map(types.String()), optional=True,
                         requires_replace=replace,
                         description="Variable values; a JSON array means any of them."),
        schema.Attribute("tenant", types.String(), optional=True, requires_replace=replace),
        schema.Attribute("project", types.String(), optional=True, requires_replace=replace),
        schema.Attribute("preemptible", PREEMPTIBLE, optional=True, requires_replace=replace,
                         description="Willing to be preempted; beyond a GPU quota, borrows "
                                     "idle GPUs. Default false."),
        schema.Attribute("priority", PRIORITY, optional=True, requires_replace=replace,
                         description="Higher goes first (a whole number). Default 0."),
    ]  # fmt: skip


def check_request(diags: Diagnostics, config: Config) -> None:
    """A saved profile or an inline one, not both and not neither: said at plan time, with
    the attribute, before anything is asked of the inventory. (The values themselves are
    the API's to judge; it names what is wrong with them.) A priority is a whole number."""
    check_whole_number(diags, config, "priority")
    given = {
        name: config.get(name)
        for name in ("profile", "inventory_type", "inventory_config")
        if config.get(name) is not None
    }
    if "profile" in given and len(given) > 1:
        inline = " and ".join(name for name in given if name != "profile")
        diags.add_error(
            f"gpuinv: profile and {inline} are both set",
            "Name a saved profile, or give inventory_type (and inventory_config): not both.",
            path=["profile"],
        )
    elif not given:
        diags.add_error(
            "gpuinv: no profile",
            "Set profile (a saved profile's name), or inventory_type and inventory_config.",
        )
    elif "profile" not in given and "inventory_type" not in given:
        diags.add_error(
            "gpuinv: inventory_config without inventory_type",
            "An inline profile needs inventory_type: baremetal, vm, vcluster or mks.",
            path=["inventory_type"],
        )


def match_input(state: State, environment: str, dry_run: bool) -> dict[str, Any]:
    given: dict[str, Any] = {
        "environment": environment,
        # As Terraform has them: the API reads a JSON-array string as any of its items.
        "variables": dict(state.get("variables") or {}),
        "dryRun": dry_run,
    }
    if state.get("profile"):
        given["profile"] = state["profile"]
    else:
        given["labels"] = {
            "paas.envmgmt.io/inventory": state.get("inventory_type") or "",
            "paas.envmgmt.io/inventory.config": state.get("inventory_config") or "[]",
        }
    for name in ("tenant", "project"):
        if state.get(name):
            given[name] = state[name]
    given["preemptible"] = bool(PREEMPTIBLE.value(state.get("preemptible")))
    given["priority"] = whole(PRIORITY.value(state.get("priority")))
    return given
