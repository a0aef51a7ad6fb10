"""The data source gpuinv_devices: the inventory's physical devices, filtered.

For configurations that look at the fleet rather than hold any of it: the arguments are
the API's device filter in HCL's terms (lower-case status, one site, tags as a map), and
every page is read, so the list is the whole selection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tf import schema, types
from tf.iface import Config, ReadDataContext, State
from tf.provider import DataSource

from iac.client import ApiError
from iac.provider.device_summaries import device_summaries, devices_attribute
from iac.provider.inventory_calls import configured_inventory, report_api_error

if TYPE_CHECKING:  # only for the annotation: provider.py imports this module
    from iac.provider.provider import GpuInventoryProvider


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
                devices_attribute(),
            ]
        )  # fmt: skip

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
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
            report_api_error(ctx.diagnostics, "devices", exc)
            return None
        return dict(config, devices=device_summaries(documents))
