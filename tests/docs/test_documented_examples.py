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
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from graphql import parse

from tests.conftest import IN_CI
from tests.docs.examples import DOCUMENTS, REPOSITORY, Example, all_examples, examples

pytestmark = pytest.mark.xdist_group("documented-examples")

BIN = Path(sys.executable).parent
DEMO_ADDRESS = "http://127.0.0.1:8000"
PROVIDER_HEADER = """terraform {
  required_providers { gpuinv = { source = "gpu-inventory/gpuinv" } }
}
provider "gpuinv" {}
"""
ACTIVE = "{ allocations(first: 500, filter: {active: true}) { totalCount } }"


@dataclass
class Demo:
    url: str
    token: str
    database_url: str
    home: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = httpx.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        return response.json()

    def active_allocations(self) -> int:
        return self.graphql(ACTIVE)["data"]["allocations"]["totalCount"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terraform_command() -> str:
    """The `terraform` users run. Required under CI (every machine of this kind has it)."""
    found = shutil.which("terraform")
    if not found:
        message = "the `terraform` command is required for the documented examples"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`gpuinv serve --demo` as the README starts it, on a port of its own."""
    home = tmp_path_factory.mktemp("newcomer")
    database_url = f"sqlite:///{home / 'gpuinv.db'}"
    port = _free_port()
    env = {**os.environ, "GPUINV_DATABASE_URL": database_url, "HOME": str(home)}
    log = (home / "serve.log").open("w")
    server = subprocess.Popen(
        [BIN / "gpuinv", "serve", "--demo", "--port", str(port)],
        cwd=home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        token = server.stdout.readline().strip()  # the demo prints its token alone on stdout
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, (home / "serve.log").read_text()[-3000:]
            time.sleep(0.1)
        yield Demo(url, token, database_url, home)
    finally:
        server.terminate()
        server.wait(30)
        log.close()


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

    def __init__(self, demo: Demo, env: dict[str, str], workdir: Path) -> None:
        self.demo, self.workdir = demo, workdir
        # The reader works in a checkout: README's `.venv/bin/python -m bench...` and
        # `.venv/bin/python -m tests.netbox.fixture` find the venv and (PYTHONPATH) the code.
        (workdir / ".venv").symlink_to(REPOSITORY / ".venv")
        self.env = dict(env)
        self.pending_graphql: Example | None = None

    def fill(self, code: str) -> str:
        return code.replace(DEMO_ADDRESS, self.demo.url)

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
            elif block.kind == "run" and block.language == "sh":
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


RUN_HERE = [d for d in DOCUMENTS]


@pytest.mark.parametrize("document", RUN_HERE)
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
    assert all("run" in found or "terraform" in found for found in kinds.values()), kinds
