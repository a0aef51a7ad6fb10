"""The data source gpuinv_match: what a gpuinv_allocation would get now, without taking it.

A matchDevice dry run with the resource's own arguments, so a plan can show the devices
and the funnel (which filter left how many) before anything is held.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tf import schema, types
from tf.iface import Config, ReadDataContext, State
from tf.provider import DataSource, Diagnostics

from iac.client import ApiError
from iac.provider.inventory_calls import configured_inventory, report_api_error
from iac.provider.match_request import check_request, match_input, request_attributes

if TYPE_CHECKING:  # only for the annotation: provider.py imports this module
    from iac.provider.provider import GpuInventoryProvider


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
                *request_attributes(replace=False),
                schema.Attribute("device_details", types.String(), computed=True),
                schema.Attribute("explanation", types.String(), computed=True),
            ]
        )

    def validate(self, diags: Diagnostics, type_name: str, config: Config) -> None:
        super().validate(diags, type_name, config)
        check_request(diags, config)

    def read(self, ctx: ReadDataContext, config: Config) -> State | None:
        inventory = configured_inventory(self.provider, ctx.diagnostics)
        if inventory is None:
            return None
        try:
            answer = inventory.match(match_input(config, "gpuinv-dry-run", dry_run=True))
        except ApiError as exc:
            report_api_error(ctx.diagnostics, "matchDevice (dry run)", exc)
            return None
        state = dict(config)
        state["device_details"] = json.dumps(answer["deviceDetails"], sort_keys=True)
        state["explanation"] = json.dumps(answer["explanation"], sort_keys=True)
        return state
