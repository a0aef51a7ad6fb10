"""CDKTF constructs for the gpuinv provider, written by hand (no `cdktf get`, which needs a
Terraform binary and a registry).

Thin on purpose: each class only names a `gpuinv_*` type and its arguments, so the same
stack can be written as plain Terraform JSON or HCL (see iac/examples). CDKTF upstream was
archived in December 2025; CDK Terrain (`cdktn`) continues it with the same API, and is
used when `cdktf` is not installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsii

# Re-exported (``as cdktf``): iac/examples/cdktf/main.py takes whichever is installed from here.
try:
    import cdktf as cdktf
except ImportError:  # pragma: no cover - the continuation of the archived project
    import cdktn as cdktf  # type: ignore[no-redef]
from constructs import Construct

from iac import SOURCE

PROVIDER_SOURCE = SOURCE.partition("/")[2]  # "gpu-inventory/gpuinv", as HCL writes it


@jsii.member(jsii_name="synthesizeAttributes")
def _synthesize(self: Any) -> Mapping[str, Any]:
    """The block's arguments, those given: each class below uses it as its override."""
    return {name: value for name, value in self._arguments.items() if value is not None}


def _request(
    profile: str | None,
    inventory_type: str | None,
    inventory_config: str | None,
    variables: Mapping[str, str] | None,
) -> dict[str, Any]:
    return {
        "profile": profile,
        "inventory_type": inventory_type,
        "inventory_config": inventory_config,
        "variables": dict(variables) if variables is not None else None,
    }


class GpuinvProvider(cdktf.TerraformProvider):
    """`provider "gpuinv" { endpoint, token }` (both default to GPUINV_ENDPOINT/_TOKEN)."""

    def __init__(
        self, scope: Construct, id: str, *, endpoint: str | None = None, token: str | None = None
    ) -> None:
        super().__init__(
            scope,
            id,
            terraform_resource_type="gpuinv",
            terraform_provider_source=PROVIDER_SOURCE,
        )
        self._arguments = {"endpoint": endpoint, "token": token}

    _synthesize_attributes = _synthesize


class GpuinvAllocation(cdktf.TerraformResource):
    """`resource "gpuinv_allocation"`: devices held while the resource exists."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        profile: str | None = None,
        inventory_type: str | None = None,
        inventory_config: str | None = None,
        variables: Mapping[str, str] | None = None,
        environment: str | None = None,
        tenant: str | None = None,
        project: str | None = None,
        provider: cdktf.TerraformProvider | None = None,
    ) -> None:
        super().__init__(scope, id, terraform_resource_type="gpuinv_allocation", provider=provider)
        self._arguments = _request(profile, inventory_type, inventory_config, variables) | {
            "environment": environment,
            "tenant": tenant,
            "project": project,
        }

    _synthesize_attributes = _synthesize

    @property
    def device_details(self) -> str:
        """The API's deviceDetails as a JSON string (a token until apply)."""
        return self.get_string_attribute("device_details")

    @property
    def allocation_id(self) -> str:
        return self.get_string_attribute("allocation_id")

    @property
    def environment(self) -> str:
        return self.get_string_attribute("environment")


class GpuinvMatch(cdktf.TerraformDataSource):
    """`data "gpuinv_match"`: a dry run, with the explanation."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        profile: str | None = None,
        inventory_type: str | None = None,
        inventory_config: str | None = None,
        variables: Mapping[str, str] | None = None,
        provider: cdktf.TerraformProvider | None = None,
    ) -> None:
        super().__init__(scope, id, terraform_resource_type="gpuinv_match", provider=provider)
        self._arguments = _request(profile, inventory_type, inventory_config, variables)

    _synthesize_attributes = _synthesize

    @property
    def device_details(self) -> str:
        return self.get_string_attribute("device_details")

    @property
    def explanation(self) -> str:
        return self.get_string_attribute("explanation")


class GpuEnvironment(Construct):
    """An environment's devices: a profile and variables in, ``device_details`` out, for
    other resources (an OS install, a Kubernetes node pool) to consume."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        profile: str,
        variables: Mapping[str, str],
        provider: cdktf.TerraformProvider | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.allocation = GpuinvAllocation(
            self, "allocation", profile=profile, variables=variables, provider=provider
        )

    @property
    def device_details(self) -> str:
        return self.allocation.device_details
