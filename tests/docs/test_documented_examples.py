"""Every example in README.md and iac/docs runs as written, against `gpuinv serve --demo`.

A newcomer copies these blocks first, so they are run the way a newcomer would: against a
real `gpuinv serve --demo` (a process of its own, on a fresh SQLite database), with the
`gpuinv` and `terraform` commands on PATH and nothing else set up. The placeholders the
documents use are filled from the environment, as a reader's shell would: `$TOKEN` (the
demo's platform-admin token, also `TF_VAR_token`), `$TOKEN_ID` (a token to revoke), and
`http://127.0.0.1:8000`, the demo's default address, becomes the test server's.

Blocks of one document run in order, in one working directory, as a reader follows them;
each document leaves the demo's allocations as it found them. How a block is run is read
from the document itself (tests/support/examples.py; tests/support/reader.py runs them).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from graphql import parse

from tests.support.demo import BIN, Demo, terraform_command
from tests.support.examples import DOCUMENTS, REPOSITORY, all_examples, examples
from tests.support.reader import Reader, run

pytestmark = pytest.mark.xdist_group("documented-examples")


@pytest.fixture(scope="module")
def environment(demo: Demo) -> dict[str, str]:
    """What a reader's shell holds after the README's set-up: the commands on PATH, the
    demo's database and token, and the provider installed for offline Terraform."""
    terraform = Path(terraform_command())
    env = {
        "PATH": os.pathsep.join([str(BIN), str(terraform.parent), "/usr/bin", "/bin"]),
        "HOME": str(demo.home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPOSITORY),  # `python -m bench...` and `tests.netbox.fixture`
        "GPUINV_DATABASE_URL": demo.database_url,
        "TOKEN": demo.token,
        # iac/docs assume the provider is configured (its index.md): by the environment
        "GPUINV_ENDPOINT": demo.url,
        "GPUINV_TOKEN": demo.token,
        "TF_VAR_token": demo.token,
        "TF_IN_AUTOMATION": "1",
    }
    installed = run(
        ["bash", "-c", 'eval "$(gpuinv terraform install)" && echo "$TF_CLI_CONFIG_FILE"'],
        demo.home,
        env,
    )
    env["TF_CLI_CONFIG_FILE"] = installed.stdout.strip().splitlines()[-1]
    created = run(
        ["gpuinv", "token", "create", "--role", "viewer", "--name", "to-revoke"], demo.home, env
    )
    assert created.stdout.strip()
    listed = json.loads(run(["gpuinv", "token", "list", "--json"], demo.home, env).stdout)
    env["TOKEN_ID"] = next(t["id"] for t in listed if t["name"] == "to-revoke")
    return env


@pytest.mark.terraform  # the documents' Terraform blocks run with the `terraform` command
@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_example_of_the_document_runs_as_written(
    document: str, demo: Demo, environment: dict[str, str], tmp_path: Path
) -> None:
    blocks = [b for b in examples(document) if b.kind not in ("netbox", "fragment", "output")]
    before = demo.active_allocations()
    Reader(demo, environment, tmp_path).follow(blocks)
    assert demo.active_allocations() == before, f"{document} left allocations behind"


def test_fragments_are_at_least_well_formed() -> None:
    """A block not run (a server that runs for ever, NetBox's) must still parse."""
    for block in all_examples():
        if block.language == "graphql":
            parse(block.code)
        elif block.language == "json" or block.kind in ("variables", "terraform"):
            json.loads(block.code)
        elif block.language == "sh":
            checked = subprocess.run(["bash", "-n"], input=block.code, text=True, check=False)
            assert checked.returncode == 0, block.where
        elif block.language == "python":
            compile(block.code, block.where, "exec")


def test_every_document_has_examples_and_says_how_each_is_run() -> None:
    kinds = {document: {b.kind for b in examples(document)} for document in DOCUMENTS}
    assert all(found & {"run", "terraform", "netbox"} for found in kinds.values()), kinds
