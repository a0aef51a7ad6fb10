"""Two `gpuinv serve` processes on one PostgreSQL, as two replicas behind a load balancer:
whichever answers, the capacity views, the database's metrics and the audit log are the
same, and a write through one is seen at once through the other."""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.database import fresh_postgres_database
from tests.support.fleet import labels, server
from tests.support.processes import serving, token

AMOUNTS = "{ capacity allocatable allocated available }"
GROUP = f"""{{ key nodes nodesAllocatable wholeNodesFree utilizationPercent
  resources {{ cpu {AMOUNTS} memoryMB {AMOUNTS} storageGB {AMOUNTS} gpus {AMOUNTS} }}
  gpuModels {{ vendor model nodes gpus {AMOUNTS} }} }}"""
VIEWS = f"""{{ capacity {{ total {GROUP} sites {GROUP} tenants {GROUP} }}
  allocationTotals {{ tenant allocations devices gpus }}
  auditEvents(first: 500) {{ edges {{ node {{ id at actor action objectName before after }} }} }}
}}"""
MATCH = """mutation($input: MatchDeviceInput!) { matchDevice(input: $input) {
  allocation { devices { gpus } } } }"""
RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { id } }"
HELD_GPUS = "{ capacity { total { resources { gpus { allocated } } } } }"
# Read from the database at each scrape: the same whichever replica is scraped.
DATABASE_GAUGES = (
    "gpuinv_allocations_active",
    "gpuinv_devices",
    "gpuinv_gpus_capacity",
    "gpuinv_gpus_allocatable",
    "gpuinv_gpus_allocated",
    "gpuinv_gpus_available",
    "gpuinv_devices_unhealthy",
    "gpuinv_quota_limit",
    "gpuinv_quota_used",
    "gpuinv_quota_borrowed_gpus",
    "gpuinv_provision_requests",
    "gpuinv_allocations_preempting",
    "gpuinv_allocations_preempted_total",
    # Not gpuinv_provision_request_wait_seconds: it is read against each scrape's own clock.
)


def _gauges(base: str) -> dict:
    text = httpx.get(f"{base}/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in DATABASE_GAUGES
    }


def test_two_replicas_agree_on_views_metrics_and_audit(tmp_path: Path) -> None:
    url, drop = fresh_postgres_database("gpuinv_ha")
    try:
        with (
            serving(url, tmp_path, "--log-format", "json") as (first, _),
            serving(url, tmp_path, "--log-format", "json") as (second, _),
        ):
            headers = {"Authorization": f"Bearer {token(url, tmp_path)}"}

            def call(base: str, query: str, **variables: object) -> dict:
                body = httpx.post(
                    f"{base}/graphql",
                    json={"query": query, "variables": variables},
                    headers=headers,
                    timeout=60,
                ).json()
                return body

            rng = random.Random(11)
            devices = [
                server(f"n-{i:02d}", gpus=rng.choice([4, 8]), site=rng.choice(["mum", "pun"]))
                for i in range(16)
            ]
            imported = call(
                first,
                "mutation($d: String!) { importInventory(data: $d) { created } }",
                d=json.dumps({"devices": devices}),
            )
            assert imported["data"]["importInventory"]["created"] == 16
            # A quota, set through the other replica, for the quota gauges to agree on.
            call(first, 'mutation { createTenant(slug: "ha-tenant") { slug } }')
            quota = 'mutation { setQuota(input: {tenant: "ha-tenant", gpus: 32}) { gpus } }'
            assert call(second, quota)["data"]["setQuota"] == {"gpus": 32}

            active: dict[str, int] = {}  # environment -> GPUs held
            for step in range(60):
                writer, reader = rng.sample([first, second], 2)
                if active and rng.random() < 0.4:
                    environment = rng.choice(sorted(active))
                    call(writer, RELEASE, e=environment)
                    active.pop(environment)
                else:
                    environment = f"env-{step}"
                    gpus = rng.choice([1, 2, 4, 8])
                    kind = "vcluster" if gpus < 8 else "baremetal"
                    variables = {"gputype": "NVIDIA", "gpu": str(gpus), "cpu": "8"}
                    request = {"environment": environment, "labels": labels(kind)}
                    answer = call(writer, MATCH, input=request | {"variables": variables})
                    if answer.get("errors"):
                        assert answer["errors"][0]["extensions"]["code"] == "NO_MATCH", answer
                    else:
                        held = answer["data"]["matchDevice"]["allocation"]["devices"]
                        active[environment] = sum(d["gpus"] for d in held)
                # the other replica sees the write at once
                seen = call(reader, HELD_GPUS)["data"]["capacity"]["total"]["resources"]
                assert seen["gpus"]["allocated"] == sum(active.values()), step
            assert active, "nothing was allocated: the test would prove nothing"

            views = [call(base, VIEWS)["data"] for base in (first, second)]
            assert views[0] == views[1]
            assert len(views[0]["auditEvents"]["edges"]) > 16
            gauges = [_gauges(base) for base in (first, second)]
            assert gauges[0] == gauges[1]
            allocations = gauges[0][("gpuinv_allocations_active", ())]
            assert allocations == len(active)
            quota_labels = (
                ("model", ""),
                ("project", ""),
                ("resource", "gpus"),
                ("tenant", "ha-tenant"),
            )
            assert gauges[0][("gpuinv_quota_limit", quota_labels)] == 32
    finally:
        drop()
