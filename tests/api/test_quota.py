"""Quotas through the real server (DESIGN.md "Sharing the fleet"): who may set them, what
counts against them, the quota step and QUOTA_EXCEEDED, borrowing, and usage given back
on release. Both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.db import quota as quota_db
from tests.support.api import Api, make_tenant, make_token

IMPORT = "mutation($d: String!) { importInventory(data: $d) { created } }"
SET = """mutation($i: QuotaInput!) { setQuota(input: $i) {
  tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus } }"""
DELETE = """mutation($t: String!, $p: String, $m: String) {
  deleteQuota(tenant: $t, project: $p, gpuModel: $m) { tenant gpus usedGpus } }"""
QUOTAS = """query($t: String, $p: String) { quotas(tenant: $t, project: $p) {
  tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus } }"""
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
  allocation { environment preemptible borrowed priority devices { hostname gpus } }
  explanation { steps { filter entered left note } } } }"""
RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { releasedAt } }"


def _labels(kind: str, model: bool = False) -> dict[str, str]:
    config = [{"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"}]
    if model:
        config.append({"type": "match", "keyInVariable": "model", "keyInDevice": "gpus.modelNo"})
    return {
        "paas.envmgmt.io/inventory": kind,
        "paas.envmgmt.io/inventory.config": json.dumps(config),
    }


def _server(hostname: str, model: str = "H100", gpus: int = 8) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "totalcpu": 64,
        "totalmemoryMB": 262144,
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": model}] * gpus,
    }


@pytest.fixture
def acme(api: Api, db: sessionmaker[Session]) -> dict[str, Api]:
    """Tenant acme (project llm) and tenant other; the pool: three H100 and two A100
    servers of 8 GPUs."""
    make_tenant(db, "acme", "llm")
    make_tenant(db, "other")
    fleet = [_server(f"h100-{n}") for n in range(3)] + [
        _server(f"a100-{n}", "A100") for n in range(2)
    ]
    api.ok(IMPORT, d=json.dumps({"devices": fleet}))
    return {
        "platform": api,
        "provisioner": api.as_(make_token(db, "provisioner", "acme")),
        "admin": api.as_(make_token(db, "partner-admin", "acme")),
        "viewer": api.as_(make_token(db, "viewer", "acme")),
        "other-admin": api.as_(make_token(db, "partner-admin", "other")),
    }


def _match(
    caller: Api, environment: str, gpus: int, kind: str = "baremetal", **extra: Any
) -> dict[str, Any]:
    given = {
        "environment": environment,
        "labels": _labels(kind, "model" in extra.get("variables", {})),
    }
    given["variables"] = {"gpu": str(gpus), **extra.pop("variables", {})}
    return caller.run(MATCH, i={**given, **extra})


def _quota(api: Api, **given: Any) -> dict[str, Any]:
    return api.ok(SET, i=given)["setQuota"]


def test_usage_counts_whole_nodes_and_slices_and_comes_back_on_release(
    acme: dict[str, Api],
) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    assert _quota(platform, tenant="acme", gpus=20, nodes=2) == {
        "tenant": "acme", "project": None, "gpuModel": None, "gpus": 20, "nodes": 2,
        "usedGpus": 0, "usedNodes": 0, "borrowedGpus": 0,
    }  # fmt: skip
    assert not _match(provisioner, "whole", 8).get("errors")
    assert not _match(provisioner, "slice", 3, "vcluster").get("errors")
    [quota] = provisioner.ok(QUOTAS)["quotas"]
    assert (quota["usedGpus"], quota["usedNodes"]) == (11, 1)
    provisioner.ok(RELEASE, e="whole")
    [quota] = provisioner.ok(QUOTAS)["quotas"]
    assert (quota["usedGpus"], quota["usedNodes"]) == (3, 0)


def test_a_claim_past_a_limit_is_quota_exceeded_and_holds_nothing(acme: dict[str, Api]) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    _quota(platform, tenant="acme", gpus=12)
    assert not _match(provisioner, "first", 8).get("errors")
    for dry_run in (True, False):
        body = _match(provisioner, "second", 8, dryRun=dry_run)
        [error] = body["errors"]
        assert error["extensions"]["code"] == "QUOTA_EXCEEDED"
        assert error["extensions"]["quota"] == {
            "tenant": "acme", "project": None, "gpuModel": None, "resource": "gpus",
            "limit": 12, "used": 8, "requested": 8,
        }  # fmt: skip
        steps = error["extensions"]["explanation"]["steps"]
        quota_step = next(s for s in steps if s["filter"] == "quota")
        assert quota_step["entered"] == 4 and quota_step["left"] == 0
        assert "acme" in error["message"] and "12" in error["message"]
    [quota] = platform.ok(QUOTAS, t="acme")["quotas"]
    assert quota["usedGpus"] == 8  # the refused claim took nothing
    allocations = platform.ok("{ allocations(filter: {active: true}) { totalCount } }")
    assert allocations["allocations"]["totalCount"] == 1


def test_an_exhausted_model_quota_steers_to_another_model(acme: dict[str, Api]) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    _quota(platform, tenant="acme", gpuModel=" h100 ", gpus=8)
    assert not _match(provisioner, "h100", 8, variables={"model": ["H100"]}).get("errors")
    steered = _match(provisioner, "any", 8, variables={"model": ["H100", "A100"]})
    assert steered["data"]["matchDevice"]["allocation"]["devices"][0]["hostname"].startswith("a100")
    refused = _match(provisioner, "h100-again", 8, variables={"model": ["H100"]})
    assert refused["errors"][0]["extensions"]["quota"]["gpuModel"] == "h100"
    quotas = platform.ok(QUOTAS, t="acme")["quotas"]
    assert [(q["gpuModel"], q["usedGpus"]) for q in quotas] == [("h100", 8)]


def test_a_project_quota_applies_to_its_claims_and_stays_under_its_tenant(
    acme: dict[str, Api],
) -> None:
    platform, admin, provisioner = acme["platform"], acme["admin"], acme["provisioner"]
    _quota(platform, tenant="acme", gpus=16)
    error = admin.error(SET, i={"tenant": "acme", "project": "llm", "gpus": 17})
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "gpus"}
    assert "16" in error["message"]
    assert _quota(admin, tenant="acme", project="llm", gpus=4)["project"] == "llm"
    body = _match(provisioner, "llm-env", 8, project="llm")
    assert body["errors"][0]["extensions"]["quota"]["project"] == "llm"
    assert not _match(provisioner, "tenant-env", 8).get("errors")  # outside the project


@pytest.mark.parametrize(
    ("who", "given", "code"),
    [
        ("admin", {"tenant": "acme", "gpus": 1}, "FORBIDDEN"),  # its tenant's own limit
        ("admin", {"tenant": "other", "project": "x", "gpus": 1}, "FORBIDDEN"),
        ("admin", {"tenant": "no-such-tenant", "project": "x", "gpus": 1}, "FORBIDDEN"),
        ("other-admin", {"tenant": "acme", "project": "llm", "gpus": 1}, "FORBIDDEN"),
        ("provisioner", {"tenant": "acme", "project": "llm", "gpus": 1}, "FORBIDDEN"),
        ("viewer", {"tenant": "acme", "project": "llm", "gpus": 1}, "FORBIDDEN"),
        ("admin", {"tenant": "acme", "project": "nope", "gpus": 1}, "NOT_FOUND"),
        ("platform", {"tenant": "nope", "gpus": 1}, "NOT_FOUND"),
        ("platform", {"tenant": "acme", "gpus": -1}, "BAD_INPUT"),
        ("platform", {"tenant": "acme", "nodes": -2}, "BAD_INPUT"),
        ("platform", {"tenant": "acme", "gpuModel": "  ", "gpus": 1}, "BAD_INPUT"),
    ],
)
def test_who_may_set_what(acme: dict[str, Api], who: str, given: dict[str, Any], code: str) -> None:
    error = acme[who].error(SET, i=given)
    assert error["extensions"]["code"] == code, error
    assert acme["platform"].ok(QUOTAS)["quotas"] == []  # nothing was set


def test_a_preemptible_claim_beyond_its_gpu_quota_borrows(acme: dict[str, Api]) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    _quota(platform, tenant="acme", gpus=8, nodes=2)
    assert not _match(provisioner, "within", 8, preemptible=True, priority=5).get("errors")
    borrowed = _match(provisioner, "beyond", 8, preemptible=True)["data"]["matchDevice"]
    assert borrowed["allocation"]["borrowed"] is True
    assert any(
        s["filter"] == "quota" and "borrow" in (s["note"] or "")
        for s in borrowed["explanation"]["steps"]
    )
    [quota] = platform.ok(QUOTAS, t="acme")["quotas"]
    assert (quota["usedGpus"], quota["borrowedGpus"], quota["usedNodes"]) == (8, 8, 2)
    # Borrowing is for GPUs only: past the nodes limit is refused.
    refused = _match(provisioner, "third", 8, preemptible=True)
    assert refused["errors"][0]["extensions"]["quota"]["resource"] == "nodes"
    provisioner.ok(RELEASE, e="beyond")
    [quota] = platform.ok(QUOTAS, t="acme")["quotas"]
    assert (quota["usedGpus"], quota["borrowedGpus"], quota["usedNodes"]) == (8, 0, 1)


def test_lowering_a_limit_below_usage_takes_nothing_away(acme: dict[str, Api]) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    _quota(platform, tenant="acme", gpus=16)
    assert not _match(provisioner, "a", 8).get("errors")
    assert not _match(provisioner, "b", 8).get("errors")
    assert _quota(platform, tenant="acme", gpus=4)["usedGpus"] == 16
    assert (
        _match(provisioner, "c", 1, "vcluster")["errors"][0]["extensions"]["code"]
        == "QUOTA_EXCEEDED"
    )
    provisioner.ok(RELEASE, e="a")
    provisioner.ok(RELEASE, e="b")
    assert not _match(provisioner, "c", 4, "vcluster").get("errors")


def test_a_quota_set_later_starts_from_the_true_usage_and_can_be_lifted(
    acme: dict[str, Api],
) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    assert not _match(provisioner, "early", 8).get("errors")
    assert _quota(platform, tenant="acme", gpus=10)["usedGpus"] == 8
    assert platform.ok(DELETE, t="acme")["deleteQuota"] == {
        "tenant": "acme",
        "gpus": 10,
        "usedGpus": 8,
    }
    assert platform.ok(DELETE, t="acme")["deleteQuota"] is None
    assert platform.ok(QUOTAS)["quotas"] == []
    assert not _match(provisioner, "unlimited", 8).get("errors")


def test_a_tenant_sees_only_its_own_quotas(acme: dict[str, Api]) -> None:
    platform = acme["platform"]
    _quota(platform, tenant="acme", gpus=10)
    _quota(platform, tenant="other", gpus=20)
    assert [q["tenant"] for q in acme["viewer"].ok(QUOTAS)["quotas"]] == ["acme"]
    assert [q["tenant"] for q in acme["other-admin"].ok(QUOTAS)["quotas"]] == ["other"]
    error = acme["viewer"].error(QUOTAS, t="other")
    assert error["extensions"]["code"] == "NOT_FOUND"  # as if it did not exist


def test_the_database_refuses_a_claim_whose_replica_has_not_seen_the_quota(
    acme: dict[str, Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quota step reads the limits at the top of an attempt; a replica whose read
    predates a quota (stale, faked here: no real schedule makes one reliably) still
    cannot pass it, because the claim's own statement checks the counters under their
    lock. The refused statement leaves nothing; the next attempt reads the quota."""
    platform, provisioner = acme["platform"], acme["provisioner"]
    _quota(platform, tenant="acme", gpus=8)
    assert not _match(provisioner, "first", 8).get("errors")
    real, reads = quota_db.limits_for, []

    def stale_once(*args: Any) -> Any:
        reads.append(args)
        return () if len(reads) == 1 else real(*args)

    monkeypatch.setattr(quota_db, "limits_for", stale_once)
    body = _match(provisioner, "second", 8)
    assert body["errors"][0]["extensions"]["code"] == "QUOTA_EXCEEDED", body
    assert len(reads) == 2  # refused by the database, then by the quota step
    [quota] = platform.ok(QUOTAS, t="acme")["quotas"]
    assert quota["usedGpus"] == 8
    devices = platform.ok("{ devices(filter: {status: [ALLOCATED]}) { totalCount } }")
    assert devices["devices"]["totalCount"] == 1  # the refused claim's device was given back


def test_capacity_shows_a_tenants_quotas_on_its_row_even_on_the_shared_pool(
    acme: dict[str, Api],
) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    _quota(platform, tenant="acme", gpus=16)
    _quota(acme["admin"], tenant="acme", project="llm", gpus=8)
    assert not _match(provisioner, "pool-claim", 8, project="llm").get("errors")
    query = "{ capacity { tenants { key nodes quotas { project gpus usedGpus } } } }"
    rows = {row["key"]: row for row in acme["viewer"].ok(query)["capacity"]["tenants"]}
    assert rows["acme"]["nodes"] == 0  # it owns nothing: it uses the pool
    assert rows["acme"]["quotas"] == [
        {"project": None, "gpus": 16, "usedGpus": 8},
        {"project": "llm", "gpus": 8, "usedGpus": 8},
    ]
    assert "other" not in rows
    platform_rows = {row["key"]: row for row in platform.ok(query)["capacity"]["tenants"]}
    assert platform_rows[None]["quotas"] == []  # the pool's own row


def test_every_quota_change_is_in_the_audit_log(acme: dict[str, Api]) -> None:
    platform = acme["platform"]
    _quota(platform, tenant="acme", gpus=16)
    _quota(platform, tenant="acme", gpus=8)
    _quota(acme["admin"], tenant="acme", project="llm", gpuModel="H100", nodes=1)
    platform.ok(DELETE, t="acme")
    audit = """{ auditEvents(filter: {objectKind: "quota"}) { edges { node {
      action objectName before after tenant } } } }"""
    events = [e["node"] for e in acme["viewer"].ok(audit)["auditEvents"]["edges"]]
    assert [(e["action"], e["objectName"], e["before"], e["after"]) for e in events] == [
        ("delete-quota", "acme", {"gpus": 8, "nodes": None}, None),
        ("set-quota", "acme/llm/H100", None, {"gpus": None, "nodes": 1}),
        ("set-quota", "acme", {"gpus": 16, "nodes": None}, {"gpus": 8, "nodes": None}),
        ("set-quota", "acme", None, {"gpus": 16, "nodes": None}),
    ]
    assert {e["tenant"] for e in events} == {"acme"}


def test_a_preemptible_claim_that_fits_is_not_borrowed_on_a_stale_read(
    acme: dict[str, Api],
) -> None:
    """The limits are read at most once a second; a claim that would borrow on that read
    decides on a fresh one (found by tests/integration/test_quota_concurrency.py)."""
    platform, provisioner = acme["platform"], acme["provisioner"]
    _quota(platform, tenant="acme", gpus=8)
    assert not _match(provisioner, "first", 8).get("errors")
    assert _match(provisioner, "probe", 8)["errors"]  # reads the limits: 8 of 8 held
    provisioner.ok(RELEASE, e="first")
    second = _match(provisioner, "second", 8, preemptible=True)["data"]["matchDevice"]
    assert second["allocation"]["borrowed"] is False
    [quota] = platform.ok(QUOTAS, t="acme")["quotas"]
    assert (quota["usedGpus"], quota["borrowedGpus"]) == (8, 0)


def test_a_mixed_host_counts_only_its_gpus_of_the_model_against_a_model_quota(
    acme: dict[str, Api],
) -> None:
    platform, provisioner = acme["platform"], acme["provisioner"]
    mixed = {
        "hostname": "mixed-0",
        "totalcpu": 64,
        "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 4
        + [{"vendorCode": "NVIDIA", "modelNo": "L40S"}] * 4,
    }
    platform.ok(IMPORT, d=json.dumps({"devices": [mixed]}))
    _quota(platform, tenant="acme", gpuModel="H100", gpus=4)
    variables = {"model": ["L40S"]}  # only the mixed host has L40S
    taken = _match(provisioner, "mixed", 8, variables=variables)["data"]["matchDevice"]
    assert taken["allocation"]["devices"] == [{"hostname": "mixed-0", "gpus": 8}]
    quotas = {q["gpuModel"]: q for q in platform.ok(QUOTAS, t="acme")["quotas"]}
    assert quotas["H100"]["usedGpus"] == 4  # its 4 H100, not all 8
