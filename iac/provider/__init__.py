"""The Terraform provider `gpu-inventory/gpuinv`, written with the `tf` framework.

A thin client of the GraphQL API (DESIGN.md "IaC bridge"): for gpuinv_allocation, create
is matchDevice, delete is releaseAllocation, read looks the allocation up by environment;
gpuinv_quota sets, lifts and reads a tenant's or project's quota; gpuinv_provision_request
submits a provision request and waits for it (requestDevices), and cancels or releases it
on destroy. Run by Terraform as
`terraform-provider-gpuinv` (see iac/install.py), never by hand.

Laid out as Terraform's provider scaffolding lays out a provider, one module per Terraform
type: provider.py is the provider block, each `<noun>_resource.py` or
`<noun>_data_source.py` holds the one type `gpuinv_<noun>`, and the few helpers several
types need live in modules named for what they share (match_request, device_summaries,
inventory_calls, arguments), so that no type carries a copy of another's code.

`main` stays importable from this package: the launcher that `gpuinv terraform install`
packages runs `from iac.provider import main`, and the launcher's bytes are hashed into
users' lock files, so that import must keep working as written.
"""

from iac.provider.allocation_resource import AllocationResource
from iac.provider.devices_data_source import DevicesDataSource
from iac.provider.match_data_source import MatchDataSource
from iac.provider.provider import GpuInventoryProvider, main
from iac.provider.provision_request_resource import ProvisionRequestResource
from iac.provider.quota_resource import QuotaResource

__all__ = [
    "AllocationResource",
    "DevicesDataSource",
    "GpuInventoryProvider",
    "MatchDataSource",
    "ProvisionRequestResource",
    "QuotaResource",
    "main",
]
