"""The provider's only way to the inventory: its GraphQL API (no database, no matching)."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

log = logging.getLogger("gpuinv.provider")

ALLOCATION_FIELDS = "id environment profile variables deviceDetails preemptible borrowed priority"
MATCH = f"""mutation($input: MatchDeviceInput!) {{ matchDevice(input: $input) {{
  allocation {{ {ALLOCATION_FIELDS} }}
  deviceDetails
  explanation {{ steps {{ filter entered left note }} unusedVariables }} }} }}"""
RELEASE = (
    "mutation($e: String!, $t: String) { releaseAllocation(environment: $e, tenant: $t) { id } }"
)
ACTIVE = f"""query($e: String!, $t: String) {{
  allocations(filter: {{environment: $e, active: true, tenant: $t}}, first: 1) {{
    edges {{ node {{ {ALLOCATION_FIELDS} }} }} }} }}"""


QUOTA_FIELDS = "tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus"
SET_QUOTA = f"mutation($i: QuotaInput!) {{ setQuota(input: $i) {{ {QUOTA_FIELDS} }} }}"
DELETE_QUOTA = """mutation($t: String!, $p: String, $m: String) {
  deleteQuota(tenant: $t, project: $p, gpuModel: $m) { tenant } }"""
QUOTAS = f"query($t: String, $p: String) {{ quotas(tenant: $t, project: $p) {{ {QUOTA_FIELDS} }} }}"

DEVICES = """query($f: DeviceFilter, $after: String) {
  devices(filter: $f, first: 500, after: $after) {
    edges { node { document } } pageInfo { hasNextPage endCursor } } }"""


class ApiError(Exception):
    """An error the API answered, with its code; ``headline`` and ``detail`` are what a
    Terraform diagnostic says of it: the code (and, past a quota, which one), then the
    message, the quota's numbers and the readable funnel."""

    def __init__(self, code: str, message: str, extensions: dict[str, Any]):
        super().__init__(message)
        self.code, self.message, self.extensions = code, message, extensions

    def headline(self) -> str:
        quota = self.extensions.get("quota")
        if not quota:
            return self.code
        model = f"{quota['gpuModel']} " if quota.get("gpuModel") else ""
        return f"{self.code}: the {model}{quota['resource']} quota of {_whose(quota)} is exceeded"

    def detail(self) -> str:
        lines = [self.message]
        quota = self.extensions.get("quota")
        if quota:
            lines += ["", *_quota_lines(quota)]
        explanation = self.extensions.get("explanation")
        if explanation:
            lines += ["", "How the inventory narrowed it down:"]
            for step in explanation.get("steps", []):
                note = f"  ({step['note']})" if step.get("note") else ""
                lines.append(f"  {step['filter']}: {step['entered']} → {step['left']}{note}")
        return "\n".join(lines)


def _whose(quota: dict[str, Any]) -> str:
    project = f' project "{quota["project"]}"' if quota.get("project") else ""
    return f'tenant "{quota["tenant"]}"{project}'


def _quota_lines(quota: dict[str, Any]) -> list[str]:
    """QUOTA_EXCEEDED's extensions.quota, spelled out: which quota, its limit, what is held
    against it and what this request would add; and, for GPUs, the way past it."""
    resource = quota["resource"]
    scope = "a project's limit" if quota.get("project") else "the tenant's own limit"
    model = f'GPU model "{quota["gpuModel"]}"' if quota.get("gpuModel") else "every GPU model"
    lines = [
        f"Quota: {_whose(quota)} ({scope}), {model}",
        f"  limit:     {quota['limit']} {resource}",
        f"  held:      {quota['used']} {resource}",
        f"  requested: {quota['requested']} {resource} more",
    ]
    if resource == "gpus":
        lines.append(
            "To go beyond a GPU quota, set preemptible = true: the allocation then borrows "
            "idle GPUs (counted as borrowed, and it may be preempted). Or release an "
            "allocation, or ask for a higher limit."
        )
    else:
        lines.append(
            "Borrowing (preemptible = true) is for GPUs only: past a nodes limit, release an "
            "allocation or ask for a higher limit."
        )
    return lines


class Inventory:
    def __init__(self, endpoint: str, token: str, timeout: float = 60.0):
        base = endpoint.rstrip("/").removesuffix("/graphql")
        self.url = f"{base}/graphql"
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def run(self, operation: str, query: str, **variables: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            response = self.http.post(self.url, json={"query": query, "variables": variables})
        except httpx.HTTPError as exc:
            message = f"the inventory at {self.url} did not answer: {exc}"
            raise ApiError("UNREACHABLE", message, {}) from exc
        if response.status_code != 200:
            raise ApiError(
                f"HTTP_{response.status_code}",
                f"the inventory at {self.url} answered HTTP {response.status_code}",
                {},
            )
        # Terraform keeps a provider's stderr in its log (TF_LOG=debug): where an apply's
        # time goes, request by request (bench/terraform.py reads these lines).
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.debug("gpuinv api %s %.1f ms HTTP %d", operation, elapsed_ms, response.status_code)
        body = response.json()
        if body.get("errors"):
            error = body["errors"][0]
            extensions = error.get("extensions") or {}
            raise ApiError(extensions.get("code", "ERROR"), error["message"], extensions)
        data: dict[str, Any] = body["data"]
        return data

    def match(self, given: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.run("matchDevice", MATCH, input=given)["matchDevice"]
        return answer

    def release(self, environment: str, tenant: str | None) -> None:
        self.run("releaseAllocation", RELEASE, e=environment, t=tenant)

    def devices(self, filter: dict[str, Any]) -> list[dict[str, Any]]:
        """Every device document the filter selects, page by page."""
        found, after = [], None
        while True:
            page = self.run("devices", DEVICES, f=filter, after=after)["devices"]
            found += [edge["node"]["document"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                return found
            after = page["pageInfo"]["endCursor"]

    def set_quota(self, given: dict[str, Any]) -> dict[str, Any]:
        quota: dict[str, Any] = self.run("setQuota", SET_QUOTA, i=given)["setQuota"]
        return quota

    def delete_quota(self, tenant: str, project: str | None, gpu_model: str | None) -> None:
        self.run("deleteQuota", DELETE_QUOTA, t=tenant, p=project, m=gpu_model)

    def quotas(self, tenant: str, project: str | None) -> list[dict[str, Any]]:
        """The tenant's quotas (a project's alone, if given: with a project the API lists
        that project's; without one, the tenant's own and every project's)."""
        found: list[dict[str, Any]] = self.run("quotas", QUOTAS, t=tenant, p=project)["quotas"]
        return found

    def active(self, environment: str, tenant: str | None) -> dict[str, Any] | None:
        edges = self.run("allocations", ACTIVE, e=environment, t=tenant)["allocations"]["edges"]
        return edges[0]["node"] if edges else None
