"""Quotas as the operators see them (issue 16's views): the gauges at /metrics, read from the
database at each scrape, against the real server on both backends; and the same gauges
with PROMETHEUS_MULTIPROC_DIR set, as ``gpuinv serve --workers`` runs. The dashboard's
Quotas view is tests/api/test_dashboard_quotas.py (the browser tier)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session, sessionmaker

from api import metrics
from tests.support.api import Api, make_tenant, make_token
from tests.support.fleet import fleet, labels, server
from tests.support.metrics import scrape, value

SET = """mutation($i: QuotaInput!) { setQuota(input: $i) { tenant } }"""
DELETE = """mutation($t: String!, $p: String, $m: String) {
  deleteQuota(tenant: $t, project: $p, gpuModel: $m) { tenant } }"""
QUOTAS = """{ quotas { tenant project gpuModel gpus nodes usedGpus usedNodes borrowedGpus } }"""
MATCH = """mutation($i: MatchDeviceInput!) { matchDevice(input: $i) {
  allocation { borrowed } } }"""
QUOTA_SERIES = ("gpuinv_quota_limit", "gpuinv_quota_used", "gpuinv_quota_borrowed_gpus")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _claim(caller: Api, environment: str, **extra: Any) -> dict[str, Any]:
    request = {"labels": labels(), "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    body = caller.ok(MATCH, i={"environment": environment, **request, **extra})
    claimed: dict[str, Any] = body["matchDevice"]
    return claimed


def _quota_samples(samples: Samples) -> Samples:
    return {key: v for key, v in samples.items() if key[0] in QUOTA_SERIES}


@pytest.fixture
def claimed(api: Api, db: sessionmaker[Session]) -> tuple[Api, Api]:
    """acme (project llm) under two quotas, holding three H100 servers of 8 GPUs: one within
    both, one borrowed past its project's H100 limit, one outside the project; tenant other
    holds a server and has no quota. The platform's client and acme's provisioner."""
    make_tenant(db, "acme", "llm")
    make_tenant(db, "other")
    fleet(api, *(server(f"gpu-{n}") for n in range(5)))
    api.ok(SET, i={"tenant": "acme", "gpus": 32, "nodes": 3})
    api.ok(SET, i={"tenant": "acme", "project": "llm", "gpuModel": "H100", "gpus": 8})
    acme = api.as_(make_token(db, "provisioner", "acme"))
    assert _claim(acme, "llm-1", project="llm")["allocation"]["borrowed"] is False
    assert _claim(acme, "llm-2", project="llm", preemptible=True)["allocation"]["borrowed"]
    assert _claim(acme, "tenant-1")["allocation"]["borrowed"] is False
    _claim(api.as_(make_token(db, "provisioner", "other")), "other-1")
    return api, acme


def test_quota_gauges_report_limits_usage_and_borrowed_gpus(claimed: tuple[Api, Api]) -> None:
    platform, _ = claimed
    samples = scrape(platform)
    tenant = {"tenant": "acme", "project": "", "model": ""}
    project = {"tenant": "acme", "project": "llm", "model": "H100"}

    def limit(resource: str, **key: str) -> float | None:
        return value(samples, "gpuinv_quota_limit", resource=resource, **key)

    def used(resource: str, **key: str) -> float | None:
        return value(samples, "gpuinv_quota_used", resource=resource, **key)

    assert (limit("gpus", **tenant), limit("nodes", **tenant)) == (32, 3)
    assert limit("gpus", **project) == 8
    assert limit("nodes", **project) is None  # the project's quota sets no node limit
    # llm-1 is within both; llm-2 borrowed its GPUs (apart from usedGpus) but holds a node
    assert (used("gpus", **project), used("nodes", **project)) == (8, 2)
    assert value(samples, "gpuinv_quota_borrowed_gpus", **project) == 8
    assert used("nodes", **tenant) == 3
    # Every series is the quotas query's answer, the platform's view, number for number.
    expected: Samples = {}

    def expect(name: str, amount: int, **labels: str) -> None:
        expected[name, tuple(sorted(labels.items()))] = amount

    for q in platform.ok(QUOTAS)["quotas"]:
        key = {"tenant": q["tenant"], "project": q["project"] or "", "model": q["gpuModel"] or ""}
        for resource, most, held in (
            ("gpus", q["gpus"], q["usedGpus"]),
            ("nodes", q["nodes"], q["usedNodes"]),
        ):
            if most is not None:
                expect("gpuinv_quota_limit", most, resource=resource, **key)
            expect("gpuinv_quota_used", held, resource=resource, **key)
        expect("gpuinv_quota_borrowed_gpus", q["borrowedGpus"], **key)
    assert _quota_samples(samples) == expected
    # Usage without a quota is counted (a quota set later starts from it), never reported.
    assert not [key for key in _quota_samples(samples) if ("tenant", "other") in key[1]]


def test_quota_gauges_follow_releases_and_lifted_quotas(claimed: tuple[Api, Api]) -> None:
    platform, acme = claimed
    release = "mutation($e: String!) { releaseAllocation(environment: $e) { releasedAt } }"
    assert acme.ok(release, e="llm-2")["releaseAllocation"]["releasedAt"]
    samples = scrape(platform)
    project = {"tenant": "acme", "project": "llm", "model": "H100"}
    assert value(samples, "gpuinv_quota_borrowed_gpus", **project) == 0
    assert value(samples, "gpuinv_quota_used", resource="nodes", **project) == 1

    platform.ok(DELETE, t="acme", p="llm", m="h100")  # the model as any case names it
    samples = _quota_samples(scrape(platform))
    assert samples  # the tenant's quota is still set
    assert not [key for key in samples if ("project", "llm") in key[1]]
    platform.ok(DELETE, t="acme")
    assert _quota_samples(scrape(platform)) == {}


def test_quota_gauges_are_read_once_with_several_workers(
    claimed: tuple[Api, Api],
    db: sessionmaker[Session],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR set (``serve --workers``), the workers' counters are
    added up from their files, and the quota gauges still come from the database, once."""
    monkeypatch.setenv(metrics.MULTIPROCESS_ENV, str(tmp_path))
    text, _ = metrics.exposition(db)
    families = [f for f in text_string_to_metric_families(text.decode()) if f.name in QUOTA_SERIES]
    assert sorted(f.name for f in families) == sorted(QUOTA_SERIES)
    served = _quota_samples(scrape(claimed[0]))
    assert {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    } == served
