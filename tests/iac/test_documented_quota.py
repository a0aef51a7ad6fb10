"""iac/docs/resources/quota.md runs as written, against `gpuinv serve --demo`, the way
tests/docs runs the other pages (tests/support/reader.py): its Terraform blocks applied and
destroyed with the `terraform` command, its GraphQL sent, its shell run in order. Until
tests/support/examples.py lists the page among its DOCUMENTS, this is what runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iac.install import install
from tests.support.demo import BIN, Demo, terraform_command
from tests.support.examples import DOCUMENTS, REPOSITORY, examples
from tests.support.reader import Reader

DOCUMENT = "iac/docs/resources/quota.md"
QUOTAS = "{ quotas { tenant project gpuModel gpus nodes } }"


@pytest.mark.skipif(DOCUMENT in DOCUMENTS, reason="tests/docs runs it with the other pages")
def test_the_quota_page_runs_as_written(demo: Demo, tmp_path: Path) -> None:
    terraform = Path(terraform_command())
    env = {
        "PATH": os.pathsep.join([str(BIN), str(terraform.parent), "/usr/bin", "/bin"]),
        "HOME": str(demo.home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPOSITORY),
        "GPUINV_ENDPOINT": demo.url,
        "GPUINV_TOKEN": demo.token,
        "TF_CLI_CONFIG_FILE": str(install(tmp_path / "provider")),
        "TF_IN_AUTOMATION": "1",
    }
    blocks = [b for b in examples(DOCUMENT) if b.kind not in ("netbox", "fragment", "output")]
    assert {b.language for b in blocks} == {"hcl", "graphql", "sh"}
    before = demo.active_allocations(), demo.graphql(QUOTAS)["data"]["quotas"]
    assert before[1] == []
    work = tmp_path / "reader"
    work.mkdir()
    Reader(demo, env, work).follow(blocks)
    after = demo.active_allocations(), demo.graphql(QUOTAS)["data"]["quotas"]
    assert after == before, f"{DOCUMENT} left allocations or quotas behind"
