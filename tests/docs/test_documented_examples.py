"""Every example in README.md and iac/docs runs as written, against `gpuinv serve --demo`.

A newcomer copies these blocks first, so they are run the way a newcomer would: against a
real `gpuinv serve --demo` (a process of its own, on a fresh SQLite database), with the
`gpuinv` and `terraform` commands on PATH and nothing else set up. The placeholders the
documents use are filled from the environment, as a reader's shell would: `$TOKEN` (the
demo's platform-admin token, also `TF_VAR_token`), `$TOKEN_ID` (a token to revoke), and
`http://127.0.0.1:8000`, the demo's default address, becomes the test server's.

Blocks of one document run in order, in one working directory, as a reader follows them;
each document leaves the demo's allocations as it found them. How a block is run is read
from the document itself (tests/docs/examples.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from graphql import parse

from tests.docs.demo import BIN, Demo, terraform_command
from tests.docs.examples import DOCUMENTS, REPOSITORY, Example, all_examples, examples

pytestmark = pytest.mark.xdist_group("documented-examples")

DEMO_ADDRESS = "http://127.0.0.1:8000"
PROVIDER_HEADER = """terraform {
  required_providers { gpuinv = { source = "gpu-inventory/gpuinv" } }
}
provider "gpuinv" {}
"""


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
    installed = _run(
        ["bash", "-c", 'eval "$(gpuinv terraform install)" && echo "$TF_CLI_CONFIG_FILE"'],
        demo.home,
        env,
    )
    env["TF_CLI_CONFIG_FILE"] = installed.stdout.strip().splitlines()[-1]
    created = _run(
        ["gpuinv", "token", "create", "--role", "viewer", "--name", "to-revoke"], demo.home, env
    )
    assert created.stdout.strip()
    listed = json.loads(_run(["gpuinv", "token", "list", "--json"], demo.home, env).stdout)
    env["TOKEN_ID"] = next(t["id"] for t in listed if t["name"] == "to-revoke")
    return env


def _run(
    command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(map(str, command))} exited {done.returncode}\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )
    return done


class Reader:
    """Follows one document: its files, its shell and its Terraform directories."""

    def __init__(self, demo: Demo | None, env: dict[str, str], workdir: Path) -> None:
        self.demo, self.workdir = demo, workdir
        # The reader works in a checkout: README's `.venv/bin/python -m bench...` and
        # `.venv/bin/python -m tests.netbox.fixture` find the venv and (PYTHONPATH) the code.
        (workdir / ".venv").symlink_to(REPOSITORY / ".venv")
        self.env = dict(env)
        self.pending_graphql: Example | None = None

    def fill(self, code: str) -> str:
        return code.replace(DEMO_ADDRESS, self.demo.url) if self.demo else code

    def follow(self, blocks: list[Example]) -> None:
        for block in blocks:
            if block.kind == "file":
                (self.workdir / block.argument).write_text(block.code)
        for block in blocks:
            if block.kind == "variables":
                assert self.pending_graphql, f"{block.where}: variables follow no GraphQL block"
                self.graphql(self.pending_graphql, json.loads(block.code))
                self.pending_graphql = None
                continue
            self.flush()
            if block.kind == "run" and block.language == "graphql":
                self.pending_graphql = block  # its variables, if any, come next
            elif block.kind in ("run", "netbox") and block.language == "sh":
                self.shell(block)
            elif block.kind == "run" and block.language == "hcl":
                self.terraform(block, "main.tf")
            elif block.kind == "terraform":
                self.terraform(block, "main.tf.json")
            elif block.kind == "run" and block.language == "python":
                self.cdktf(block)
        self.flush()

    def flush(self) -> None:
        if self.pending_graphql:
            self.graphql(self.pending_graphql, None)
            self.pending_graphql = None

    def graphql(self, block: Example, variables: dict | None) -> None:
        answer = self.demo.graphql(self.fill(block.code), variables)
        assert not answer.get("errors") and answer.get("data"), f"{block.where}: {answer}"

    def shell(self, block: Example) -> None:
        script = self.workdir / f"block-{block.line}.sh"
        script.write_text(self.fill(block.code))
        _run(["bash", "-euo", "pipefail", script.name], self.workdir, self.env)

    def terraform(self, block: Example, file_name: str) -> None:
        stack = self.workdir / f"terraform-{block.line}"
        stack.mkdir()
        (stack / file_name).write_text(self.fill(block.code))
        if "required_providers" not in block.code:
            # the pages' blocks assume the provider's set-up (iac/docs/index.md) beside them
            (stack / "providers.tf").write_text(PROVIDER_HEADER)
        self.apply_and_destroy(stack, block)

    def apply_and_destroy(self, stack: Path, block: Example) -> None:
        for command in (
            ["terraform", "init", "-input=false", "-no-color"],
            ["terraform", "apply", "-auto-approve", "-input=false", "-no-color"],
            ["terraform", "destroy", "-auto-approve", "-input=false", "-no-color"],
        ):
            try:
                _run(command, stack, self.env)
            except AssertionError as exc:
                raise AssertionError(f"{block.where}: {exc}") from None

    def cdktf(self, block: Example) -> None:
        app = self.workdir / f"cdktf-{block.line}"
        app.mkdir()
        (app / "main.py").write_text(self.fill(block.code))
        _run([sys.executable, "main.py"], app, self.env)
        stacks = sorted((app / "cdktf.out" / "stacks").iterdir())
        assert stacks, f"{block.where}: the app synthesized no stack"
        for stack in stacks:
            self.apply_and_destroy(stack, block)


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
