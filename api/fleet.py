"""The fleet view: this inventory's capacity added to that of other gpu-inventory services
("providers", seed 004's aggregation across providers).

Each provider is asked at once, with a time limit. One that does not answer, answers
late, refuses our token or answers something that is not a capacity view becomes an
error in the summary, and the others are still added up: a fleet view never fails whole
because one site is down.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from api.domain.capacity import CapacityGroup, group_from_json, merged
from api.settings import Provider

_AMOUNTS = "{ capacity allocatable allocated available }"
QUERY = f"""{{ capacity {{ total {{ key nodes nodesAllocatable wholeNodesFree
  resources {{ cpu {_AMOUNTS} memoryMB {_AMOUNTS} storageGB {_AMOUNTS} gpus {_AMOUNTS} }}
  gpuModels {{ vendor model nodes gpus {_AMOUNTS} }} }} }} }}"""
LOCAL = "local"


@dataclass
class SourceAnswer:
    name: str
    url: str | None  # None for this inventory itself
    seconds: float
    group: CapacityGroup | None = None
    error: str | None = None


@dataclass
class FleetView:
    total: CapacityGroup
    sources: list[SourceAnswer]

    @property
    def answered(self) -> int:
        return sum(1 for s in self.sources if s.error is None)

    @property
    def failed(self) -> int:
        return len(self.sources) - self.answered


async def ask(client: httpx.AsyncClient, provider: Provider, timeout: float) -> SourceAnswer:
    """One provider's capacity total, or why there is none."""
    started = time.perf_counter()
    answer = SourceAnswer(provider.name, provider.url, 0.0)
    try:
        response = await asyncio.wait_for(
            client.post(
                f"{provider.url}/graphql",
                json={"query": QUERY},
                headers={"Authorization": f"Bearer {provider.token}"},
            ),
            timeout,
        )
        answer.group = _parse(response)
    except TimeoutError:
        answer.error = f"no answer within {timeout:g} s"
    except httpx.HTTPError as exc:
        answer.error = f"unreachable: {exc}" if str(exc) else f"unreachable: {type(exc).__name__}"
    except ValueError as exc:
        answer.error = str(exc)
    answer.seconds = time.perf_counter() - started
    return answer


def _parse(response: httpx.Response) -> CapacityGroup:
    if response.status_code != 200:
        raise ValueError(f"answered HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise ValueError("answered something that is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("answered JSON that is not a GraphQL response")
    if body.get("errors"):
        error = body["errors"][0] if isinstance(body["errors"], list) else {}
        code = (error.get("extensions") or {}).get("code", "ERROR")
        raise ValueError(f"{code}: {error.get('message', 'an error')}")
    try:
        return group_from_json(body["data"]["capacity"]["total"])
    except (KeyError, TypeError):
        raise ValueError("answered without a capacity view (not a gpu-inventory?)") from None
    except ValueError as exc:
        raise ValueError(f"answered a capacity view that does not add up: {exc}") from None


async def fleet_view(
    local: CapacityGroup | None, providers: list[Provider], timeout: float
) -> FleetView:
    """``local`` (None to leave this inventory out) and every provider, added up."""
    sources = [SourceAnswer(LOCAL, None, 0.0, group=local)] if local is not None else []
    if providers:
        async with httpx.AsyncClient(timeout=timeout) as client:
            sources += await asyncio.gather(*(ask(client, p, timeout) for p in providers))
    total = merged(s.group for s in sources if s.group is not None)
    return FleetView(total, sources)
