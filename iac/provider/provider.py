"""The `provider "gpuinv"` block and the process Terraform starts for it.

The provider's own part is small on purpose: it reads where the inventory is and the token
to use (from the block, else GPUINV_ENDPOINT and GPUINV_TOKEN), makes the one Inventory
client every resource and data source calls through, and lists those types. `main` is
what the installed launcher runs (see iac/install.py).
"""

from __future__ import annotations

import logging
import os
import sys

from tf import runner, schema, types
from tf.iface import Config
from tf.provider import DataSource, Diagnostics, Provider, Resource

from iac import SOURCE
from iac.client import Inventory
from iac.provider.allocation_resource import AllocationResource
from iac.provider.devices_data_source import DevicesDataSource
from iac.provider.match_data_source import MatchDataSource
from iac.provider.provision_request_resource import ProvisionRequestResource
from iac.provider.quota_resource import QuotaResource


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
                    description=(
                        "A bearer token: a service token (gpuinv token create) or an OpenID "
                        "Connect token the service trusts; or GPUINV_TOKEN."
                    ),
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
        return [AllocationResource, ProvisionRequestResource, QuotaResource]


def main() -> None:
    # Terraform records a provider's stderr only in its own log, so debug lines cost
    # nothing unless the user asked for them with TF_LOG (or TF_LOG_PROVIDER, the
    # providers' log alone: where a waiting provision request's progress shows).
    asked = os.environ.get("TF_LOG") or os.environ.get("TF_LOG_PROVIDER")
    level = logging.DEBUG if asked else logging.WARNING
    logging.basicConfig(stream=sys.stderr, level=level, format="[%(levelname)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runner.run_provider(GpuInventoryProvider())
