"""The Terraform provider `gpu-inventory/gpuinv`, written with the `tf` framework.

A thin client of the GraphQL API (DESIGN.md "IaC bridge"): create is matchDevice, delete
is releaseAllocation, read looks the allocation up by environment. Run by Terraform as
`terraform-provider-gpuinv` (see iac/install.py), never by hand.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import uuid
from typing import Any

from tf import runner, schema, types
from tf.iface import (
    Config,
    CreateContext,
    DeleteContext,
    ImportContext,
    ReadContext,
    ReadDataContext,
    State,
    UpdateContext,
)
from tf.provider import DataSource, Diagnostics, Provider, Resource
from tf.types import Unknown

from iac import SOURCE
from iac.client import ApiError, Inventory


class GpuInventoryProvider(Provider):
    def __init__(self) -> None:
        self.inventory: Inventory | None = None

    def full_name(self) -> str:
        return SOURCE

    def get_model_prefix(self) -> str:
        return "gpuinv_"

    def get_provider_schema(self, diags: Diagnostics) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute(
                    "endpoint",
                    types.String(),
                    optional=True,
                    description="The service's base URL (may end in /graphql); or GPUINV_ENDPOINT.",
                ),
                schema.Attribute(
                    "token",
                    types.String(),
                    optional=True,
                    sensitive=True,
                    description="A bearer token (gpuinv token create); or GPUINV_TOKEN.",
                ),
            ]
        )

    def validate_config(self, diags: Diagnostics, config: Config) -> None:
        pass

    def configure_provider(self, diags: Diagnostics, config: Config) -> None:
        endpoint = config.get("endpoint") or os.environ.get("GPUINV_ENDPOINT")
        token = config.get("token") or os.environ.get("GPUINV_TOKEN")
        if not endpoint or not token:
            diags.add_error(
                "gpuinv: endpoint and token are required",
                "Set them in the provider block, or GPUINV_ENDPOINT and GPUINV_TOKEN.",
            )
            return
        self.inventory = Inventory(endpoint, token)

    def get_data_sources(self) -> list[type[DataSource]]:
        return [DevicesDataSource, MatchDataSource]

    def get_resources(self) -> list[type[Resource]]:
        return [AllocationResource]


def _request_attributes(replace: bool) -> list[schema.Attribute]:
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
    ]  # fmt: skip


def _check_request(diags: Diagnostics, config: Config) -> None:
    """A saved profile or an inline one, not both and not neither: said at plan time, with
    the attribute, before anything is asked of the inventory. (The values themselves are
    the API's to judge; it names what is wrong with them.)"""
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


def _match_input(state: State, environment: str, dry_run: bool) -> dict[str, Any]:
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
    return given


class Object(types.TfType):
    """Terraform's object type, which the `tf` framework lacks: named attributes, each of
    its own type, all present (null when unknown). `devices` is a list of these, so
    `totalgpus` is a number in HCL, as DESIGN.md fixes it."""

    def __init__(self, attributes: dict[str, types.TfType]):
        self.attributes = attributes

    def encode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return {name: kind.encode(value.get(name)) for name, kind in self.attributes.items()}

    def decode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return {name: kind.decode(value.get(name)) for name, kind in self.attributes.items()}

    def tf_type(self) -> bytes:
        fields = ",".join(
            f'"{name}":{kind.tf_type().decode()}' for name, kind in self.attributes.items()
        )
        return f'["object",{{{fields}}}]'.encode()


DEVICE = Object(
    {
        "id": types.String(),
        "hostname": types.String(),
        "status": types.String(),
        "site": types.String(),
        "totalgpus": types.Number(),
        "gpu_model": types.String(),
    }
)


def _devices_attribute() -> schema.Attribute:
    return schema.Attribute(
        "devices",
        types.List(DEVICE),
        computed=True,
        description="Each device: id, hostname, status, site, totalgpus, gpu_model.",
    )


def _devices(details: Any) -> list[dict[str, Any]]:
    """The summary of each device document (the full documents are device_details)."""
    documents = details if isinstance(details, list) else [details] if details else []
    found = []
    for document in documents:
        gpus = document.get("gpus") or []
        found.append(
            {
                "id": document.get("id"),
                "hostname": document.get("hostname"),
                "status": document.get("status"),
                "site": document.get("site"),
                "totalgpus": document.get("totalgpus"),
                "gpu_model": gpus[0].get("modelNo") if gpus else None,
            }
        )
    return found


def _configured(provider: GpuInventoryProvider, diags: Diagnostics) -> Inventory | None:
    if provider.inventory is None:
        diags.add_error("gpuinv: the provider is not configured")
    return provider.inventory


def _error(diags: Diagnostics, what: str, exc: ApiError) -> None:
    diags.add_error(f"gpuinv: {what}: {exc.code}", exc.detail())


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
                *_request_attributes(replace=True),
                schema.Attribute("environment", types.String(), optional=True, computed=True,
                                 requires_replace=True,
                                 description="The idempotency key; default gpuinv-<uuid>."),
                schema.Attribute("allocation_id", types.String(), computed=True),
                schema.Attribute("device_details", types.String(), computed=True,
                                 description="The API's deviceDetails, as a JSON string."),
                _devices_attribute(),
            ]
        )  # fmt: skip

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        _check_request(diags, config)

    def create(self, ctx: CreateContext, planned: State) -> State | None:
        inventory = _configured(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        environment = _known(planned.get("environment")) or f"gpuinv-{uuid.uuid4()}"
        try:
            answer = inventory.match(_match_input(planned, environment, dry_run=False))
        except ApiError as exc:
            _error(ctx.diagnostics, "matchDevice", exc)
            return None
        return _state(planned, answer["allocation"])

    def read(self, ctx: ReadContext, current: State) -> State | None:
        inventory = _configured(self.provider, ctx.diagnostics)
        if inventory is None:
            return current
        try:
            found = inventory.active(current["environment"], current.get("tenant"))
        except ApiError as exc:
            _error(ctx.diagnostics, "reading the allocation", exc)
            return current
        return _state(current, found) if found else None  # released elsewhere: re-create

    def update(self, ctx: UpdateContext, current: State, planned: State) -> State | None:
        return planned  # every request argument forces replacement: nothing to update

    def delete(self, ctx: DeleteContext, current: State) -> None:
        inventory = _configured(self.provider, ctx.diagnostics)
        if inventory is None:
            return
        try:
            inventory.release(current["environment"], current.get("tenant"))
        except ApiError as exc:
            _error(ctx.diagnostics, "releaseAllocation", exc)

    def import_(self, ctx: ImportContext, id: str) -> State | None:
        inventory = _configured(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        try:
            found = inventory.active(id, None)
        except ApiError as exc:
            _error(ctx.diagnostics, "reading the allocation", exc)
            return None
        if found is None:
            ctx.diagnostics.add_error(f"gpuinv: no active allocation for environment {id!r}")
            return None
        base = {attribute.name: None for attribute in _request_attributes(replace=True)}
        base["profile"] = found.get("profile")
        base["variables"] = {k: _as_text(v) for k, v in (found.get("variables") or {}).items()}
        return _state(base, found)

    def upgrade(self, ctx: Any, version: int, old: State) -> State | None:
        return old  # schema version 0 only: nothing to upgrade


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
    state["devices"] = _devices(allocation["deviceDetails"])
    return state


class MatchDataSource(DataSource):
    """gpuinv_match: what an allocation would get now (a dry run), with the funnel."""

    def __init__(self, provider: GpuInventoryProvider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "match"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                *_request_attributes(replace=False),
                schema.Attribute("device_details", types.String(), computed=True),
                schema.Attribute("explanation", types.String(), computed=True),
            ]
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        _check_request(diags, config)

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        inventory = _configured(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        try:
            answer = inventory.match(_match_input(config, "gpuinv-dry-run", dry_run=True))
        except ApiError as exc:
            _error(ctx.diagnostics, "matchDevice (dry run)", exc)
            return None
        state = dict(config)
        state["device_details"] = json.dumps(answer["deviceDetails"], sort_keys=True)
        state["explanation"] = json.dumps(answer["explanation"], sort_keys=True)
        return state


class DevicesDataSource(DataSource):
    """gpuinv_devices: the inventory's physical devices, filtered."""

    def __init__(self, provider: GpuInventoryProvider):
        self.provider = provider

    @classmethod
    def get_name(cls) -> str:
        return "devices"

    @classmethod
    def get_schema(cls) -> schema.Schema:
        return schema.Schema(
            attributes=[
                schema.Attribute("status", types.String(), optional=True,
                                 description="available, allocated, maintenance, ..."),
                schema.Attribute("gpu_vendor", types.String(), optional=True),
                schema.Attribute("gpu_model", types.String(), optional=True),
                schema.Attribute("site", types.String(), optional=True),
                schema.Attribute("tags", types.Map(types.String()), optional=True,
                                 description="Devices carrying all of these tags."),
                _devices_attribute(),
            ]
        )  # fmt: skip

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        inventory = _configured(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        filter: dict[str, Any] = {}
        if config.get("status"):
            filter["status"] = [str(config["status"]).upper()]
        for name, key in (("gpu_vendor", "gpuVendor"), ("gpu_model", "gpuModel")):
            if config.get(name):
                filter[key] = config[name]
        if config.get("site"):
            filter["site"] = [config["site"]]
        if config.get("tags"):
            filter["tags"] = [{"key": k, "value": v} for k, v in config["tags"].items()]
        try:
            documents = inventory.devices(filter)
        except ApiError as exc:
            _error(ctx.diagnostics, "devices", exc)
            return None
        return dict(config, devices=_devices(documents))


def main() -> None:
    # Terraform records a provider's stderr only in its own log, so debug lines cost
    # nothing unless the user asked for them with TF_LOG.
    level = logging.DEBUG if os.environ.get("TF_LOG") else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level, format="[%(levelname)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runner.run_provider(GpuInventoryProvider())
