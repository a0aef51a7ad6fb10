"""The provider's only way to the inventory: its GraphQL API (no database, no matching)."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

log = logging.getLogger("gpuinv.provider")

ALLOCATION_FIELDS = "id environment profile variables deviceDetails"
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


DEVICES = """query($f: DeviceFilter, $after: String) {
  devices(filter: $f, first: 500, after: $after) {
    edges { node { document } } pageInfo { hasNextPage endCursor } } }"""


class ApiError(Exception):
    """An error the API answered, with its code; ``summary`` is the readable funnel."""

    def __init__(self, code: str, message: str, extensions: dict[str, Any]):
        super().__init__(message)
        self.code, self.message, self.extensions = code, message, extensions

    def detail(self) -> str:
        explanation = self.extensions.get("explanation")
        if not explanation:
            return self.message
        lines = [self.message, "", "How the inventory narrowed it down:"]
        for step in explanation.get("steps", []):
            note = f"  ({step['note']})" if step.get("note") else ""
            lines.append(f"  {step['filter']}: {step['entered']} → {step['left']}{note}")
        return "\n".join(lines)


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

    def active(self, environment: str, tenant: str | None) -> dict[str, Any] | None:
        edges = self.run("allocations", ACTIVE, e=environment, t=tenant)["allocations"]["edges"]
        return edges[0]["node"] if edges else None
