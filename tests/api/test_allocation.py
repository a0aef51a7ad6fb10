"""matchDevice / releaseAllocation through the API: the fixed contract of DESIGN.md."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.support.api import Api, make_tenant, make_token
from tests.support.fleet import MATCH, fleet, labels, server

RELEASE = """mutation($env: String!) { releaseAllocation(environment: $env) {
  id releasedAt } }"""


def match(api: Api, env: str, variables: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return api.ok(
        MATCH, input={"environment": env, "labels": labels(), "variables": variables} | extra
    )["matchDevice"]


def test_match_allocates_the_smallest_fit_and_returns_its_document(api: Api) -> None:
    fleet(api, server("big", 8), server("small", 4), server("amd", 2, vendor="AMD"))
    result = match(api, "env-1", {"gputype": "NVIDIA", "gpu": "4"})
    assert result["deviceDetails"]["hostname"] == "small"
    assert result["deviceDetails"]["status"] == "allocated"
    assert result["allocation"]["devices"] == [{"hostname": "small", "exclusive": True, "gpus": 4}]
    steps = result["explanation"]["steps"]
    assert steps[0]["entered"] == 3 and steps[1]["filter"] == "gpus.vendorCode=NVIDIA"
    assert steps[2]["note"] == "variable 'zone' not given: filter skipped"
    device = api.ok(
        '{ devices(filter: {hostnamePrefix: "small"}) { edges { node { status freeGpus } } } }'
    )["devices"]["edges"][0]["node"]
    assert device == {"status": "ALLOCATED", "freeGpus": 0}


def test_same_request_replays_and_a_different_one_is_environment_in_use(api: Api) -> None:
    fleet(api, server("a"), server("b"))
    first = match(api, "env-1", {"gpu": "8"})
    again = match(api, "env-1", {"gpu": 8})  # "8" and 8 are the same request
    assert again["allocation"]["id"] == first["allocation"]["id"]
    assert again["deviceDetails"] == first["deviceDetails"] and again["claimAttempts"] == 0
    clash = api.error(
        MATCH, input={"environment": "env-1", "labels": labels(), "variables": {"gpu": "4"}}
    )
    assert clash["extensions"]["code"] == "ENVIRONMENT_IN_USE"
    count = api.ok("{ allocations(filter: {active: true}) { edges { node { id } } } }")
    assert len(count["allocations"]["edges"]) == 1


def test_a_replay_needs_no_free_device_and_leaves_the_others_free(api: Api) -> None:
    """The unique index, not a look-up first, tells a repeated request: with a free device
    it claims one, meets its first allocation and gives the device back; with none free
    it still answers with its allocation, not NO_MATCH."""
    fleet(api, server("a"), server("b"))
    first = match(api, "env-1", {"gpu": "8"})
    again = match(api, "env-1", {"gpu": "8"})  # "b" is free: claimed, then given back
    assert again["allocation"]["id"] == first["allocation"]["id"]
    free = "{ devices(filter: {status: [AVAILABLE]}) { edges { node { hostname } } } }"
    assert len(api.ok(free)["devices"]["edges"]) == 1
    match(api, "env-2", {"gpu": "8"})  # now nothing is free
    for env in ("env-1", "env-2"):
        assert match(api, env, {"gpu": "8"})["claimAttempts"] == 0  # replays
    clash = api.error(
        MATCH, input={"environment": "env-1", "labels": labels(), "variables": {"gpu": "4"}}
    )
    assert clash["extensions"]["code"] == "ENVIRONMENT_IN_USE"  # not NO_MATCH


def test_dry_run_allocates_nothing(api: Api) -> None:
    fleet(api, server("a"))
    result = match(api, "env-1", {"gpu": 8}, dryRun=True)
    assert result["allocation"] is None and result["deviceDetails"]["hostname"] == "a"
    assert result["deviceDetails"]["status"] == "available"
    assert match(api, "env-1", {"gpu": 8})["allocation"] is not None


def test_no_match_is_an_error_carrying_the_funnel(api: Api) -> None:
    fleet(api, server("a", 8))
    error = api.error(
        MATCH, input={"environment": "e", "labels": labels(), "variables": {"gpu": 16}}
    )
    assert error["extensions"]["code"] == "NO_MATCH"
    steps = error["extensions"]["explanation"]["steps"]
    gpu_step = next(s for s in steps if s["filter"] == "requiredGPU≥16")
    assert (gpu_step["entered"], gpu_step["left"]) == (1, 0)
    assert gpu_step["note"] == "largest free: GPUs 8"
    assert "requiredGPU≥16" in error["message"]


def test_release_frees_the_devices_and_is_idempotent(api: Api) -> None:
    fleet(api, server("a"))
    allocation = match(api, "env-1", {"gpu": 8})["allocation"]
    released = api.ok(RELEASE, env="env-1")["releaseAllocation"]
    assert released["id"] == allocation["id"] and released["releasedAt"]
    assert api.ok(RELEASE, env="env-1")["releaseAllocation"]["id"] == allocation["id"]
    assert api.ok(RELEASE, env="never")["releaseAllocation"] is None
    again = match(api, "env-1", {"gpu": 8})
    assert again["allocation"]["id"] != allocation["id"]  # a released environment starts anew


def test_vcluster_slices_share_a_device_until_it_is_full(api: Api) -> None:
    fleet(api, server("a", 8))
    for n in range(4):
        result = api.ok(
            MATCH,
            input={
                "environment": f"s{n}",
                "labels": labels("vcluster"),
                "variables": {"gpu": 2, "cpu": 16},
            },
        )["matchDevice"]
        assert result["deviceDetails"]["slice"] == {
            "cpu": 16,
            "memoryMB": 0,
            "storageGB": 0,
            "gpus": 2,
        }
    full = api.error(
        MATCH, input={"environment": "s5", "labels": labels("vcluster"), "variables": {"gpu": 1}}
    )
    assert full["extensions"]["code"] == "NO_MATCH"
    whole = api.error(MATCH, input={"environment": "w", "labels": labels(), "variables": {}})
    assert whole["extensions"]["code"] == "NO_MATCH"  # a sliced device is not offered whole
    api.ok(RELEASE, env="s0")
    device = api.ok("{ devices { edges { node { status freeGpus freeCpu } } } }")
    assert device["devices"]["edges"][0]["node"] == {
        "status": "AVAILABLE",
        "freeGpus": 2,
        "freeCpu": 128 - 3 * 16,
    }


def test_mks_takes_n_nodes_and_details_are_an_array(api: Api) -> None:
    fleet(
        api,
        *(
            server(f"n{i}", infiniband=[{"name": "ib0", "fabric": "f1"}], site="s1")
            for i in range(3)
        ),
    )
    result = api.ok(
        MATCH, input={"environment": "k", "labels": labels("mks"), "variables": {"nodes": 2}}
    )["matchDevice"]
    assert [d["hostname"] for d in result["deviceDetails"]] == ["n0", "n1"]
    assert result["explanation"]["steps"][-1]["note"] == "2 on site s1, fabric f1"


def test_allocated_device_refuses_manual_status_unless_forced(api: Api) -> None:
    fleet(api, server("a"))
    device_id = match(api, "env", {})["deviceDetails"]["id"]
    set_status = (
        "mutation($id: ID!, $f: Boolean!) { setStatus(id: $id, status: MAINTENANCE, "
        "force: $f) { status } }"
    )
    assert api.error(set_status, id=device_id, f=False)["extensions"]["code"] == "DEVICE_ALLOCATED"
    assert api.ok(set_status, id=device_id, f=True)["setStatus"]["status"] == "MAINTENANCE"
    api.ok(RELEASE, env="env")  # release keeps an operator's maintenance
    node = api.ok(
        "query($id: ID!) { node(id: $id) { ... on Device { status freeGpus } } }", id=device_id
    )["node"]
    assert node == {"status": "MAINTENANCE", "freeGpus": 8}


def test_saved_profiles_are_matched_by_name(api: Api) -> None:
    saved = api.ok(
        'mutation($l: JSON!) { saveProfile(name: "h100", labels: $l) { name inventoryType } }',
        l=labels(),
    )["saveProfile"]
    assert saved == {"name": "h100", "inventoryType": "BAREMETAL"}
    fleet(api, server("a"))
    result = api.ok(
        MATCH, input={"environment": "e", "profile": "h100", "variables": {"gpu": 8, "gpus": 1}}
    )["matchDevice"]
    assert result["deviceDetails"]["hostname"] == "a"
    assert result["explanation"]["unusedVariables"] == ["gpus"]
    missing = api.error(MATCH, input={"environment": "f", "profile": "nope", "variables": {}})
    assert missing["extensions"]["code"] == "NOT_FOUND"


def test_a_tenant_matches_only_its_own_devices(api: Api, db) -> None:
    make_tenant(db, "acme")
    make_tenant(db, "globex")
    fleet(api, server("acme-1", tenant="acme"), server("globex-1", tenant="globex"))
    acme = api.as_(make_token(db, "provisioner", "acme"))
    result = acme.ok(MATCH, input={"environment": "e", "labels": labels(), "variables": {}})[
        "matchDevice"
    ]
    assert result["deviceDetails"]["hostname"] == "acme-1"
    assert result["explanation"]["steps"][0]["entered"] == 1
    second = acme.error(MATCH, input={"environment": "e2", "labels": labels(), "variables": {}})
    assert second["extensions"]["code"] == "NO_MATCH"  # globex-1 is not acme's to take
    other = acme.error(
        MATCH, input={"environment": "x", "labels": labels(), "variables": {}, "tenant": "globex"}
    )
    assert other["extensions"]["code"] == "NOT_FOUND"
    viewer = api.as_(make_token(db, "viewer", "acme"))
    assert (
        viewer.error(MATCH, input={"environment": "v", "labels": labels(), "variables": {}})[
            "extensions"
        ]["code"]
        == "FORBIDDEN"
    )


def test_the_seed_label_json_against_the_demo_fleet(api: Api, db) -> None:
    from api.demo import TENANTS, demo_fleet
    from tests.support.seed import SEED_CONFIG

    for slug, _ in TENANTS:
        make_tenant(db, slug)
    sample = demo_fleet()
    api.ok("mutation($d: String!) { importInventory(data: $d) { created } }", d=json.dumps(sample))
    api.ok(
        'mutation($l: JSON!) { saveProfile(name: "seed", labels: $l) { name } }',
        l={
            "paas.envmgmt.io/inventory": "baremetal",
            "paas.envmgmt.io/inventory.config": SEED_CONFIG,
        },
    )
    variables = {"gputype": "NVIDIA", "location": "india", "gpu": "8", "cpu": "200"}
    result = api.ok(
        MATCH, input={"environment": "seed-1", "profile": "seed", "variables": variables}
    )["matchDevice"]
    fits = [
        d
        for d in sample["devices"]
        if d["status"] == "available"
        and d["tags"]["location"] == "india"
        and d["gpus"][0]["vendorCode"] == "NVIDIA"
        and len(d["gpus"]) >= 8
        and d["totalcpu"] >= 200
    ]
    expected = min(
        fits, key=lambda d: (len(d["gpus"]), d["totalcpu"], d["totalmemoryMB"], d["hostname"])
    )
    details = result["deviceDetails"]
    assert details["hostname"] == expected["hostname"]
    # The seed's device_details fields, and the rest of the device document.
    for key in ("hostname", "manufacturer", "model", "totalcpu", "totalgpus", "tags"):
        assert details[key] == (expected[key] if key != "totalgpus" else len(expected["gpus"]))
    assert set(details) >= {
        "id",
        "kind",
        "status",
        "gpus",
        "site",
        "location",
        "rack",
        "infiniband",
        "source",
        "totalmemoryMB",
        "totalstorageGB",
    }
    assert details["status"] == "allocated" and details["gpus"][0]["vendorCode"] == "NVIDIA"
    assert [s["filter"] for s in result["explanation"]["steps"][1:3]] == [
        "gpus.vendorCode=NVIDIA",
        "tags=india",
    ]


def test_the_service_releases_an_expired_lease_by_itself(api: Api, database_url: str) -> None:
    from api.settings import Settings
    from tests.support.server import ServerThread

    fleet(api, server("a"))
    with ServerThread(Settings(database_url=database_url, lease_sweep_seconds=1)) as sweeping:
        leased = Api(sweeping.url, api.token)
        held = match(leased, "leased", {}, ttlSeconds=1)["allocation"]
        assert held["expiresAt"] is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = leased.ok(
                '{ allocations(filter: {environment: "leased"}) { edges { node '
                "{ releasedAt releasedBy } } } }"
            )["allocations"]["edges"]
            if found[0]["node"]["releasedAt"]:
                break
            time.sleep(0.3)
        assert found[0]["node"]["releasedBy"] == "system:lease-expiry"
    device = api.ok("{ devices { edges { node { status } } } }")["devices"]["edges"][0]["node"]
    assert device == {"status": "AVAILABLE"}
