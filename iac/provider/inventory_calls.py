"""What every gpuinv resource and data source does around a call to the inventory.

Each needs the Inventory client that the provider block configured, and each turns an
error the API answers into a Terraform diagnostic. Both live here, once, so that every
type says "not configured" and reports an API error's code, quota and funnel the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tf.provider import Diagnostics

from iac.client import ApiError, Inventory

if TYPE_CHECKING:  # only for the annotation: provider.py imports every type's module
    from iac.provider.provider import GpuInventoryProvider


def configured_inventory(provider: GpuInventoryProvider, diags: Diagnostics) -> Inventory | None:
    if provider.inventory is None:
        diags.add_error("gpuinv: the provider is not configured")
    return provider.inventory


def report_api_error(diags: Diagnostics, what: str, exc: ApiError) -> None:
    """``gpuinv: <operation>: <CODE>`` (past a quota: which quota is exceeded), with the
    API's message, the quota's numbers and the funnel as the detail."""
    diags.add_error(f"gpuinv: {what}: {exc.headline()}", exc.detail())
