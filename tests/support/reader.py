"""Following a document as a reader does: its files written, its shell blocks run, its
Terraform directories applied and destroyed, its GraphQL sent (tests/docs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.demo import Demo
from tests.support.examples import REPOSITORY, Example

DEMO_ADDRESS = "http://127.0.0.1:8000"
PROVIDER_HEADER = """terraform {
  required_providers { gpuinv = { source = "gpu-inventory/gpuinv" } }
}
provider "gpuinv" {}
"""


def run(
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
        run(["bash", "-euo", "pipefail", script.name], self.workdir, self.env)

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
                run(command, stack, self.env)
            except AssertionError as exc:
                raise AssertionError(f"{block.where}: {exc}") from None

    def cdktf(self, block: Example) -> None:
        app = self.workdir / f"cdktf-{block.line}"
        app.mkdir()
        (app / "main.py").write_text(self.fill(block.code))
        run([sys.executable, "main.py"], app, self.env)
        stacks = sorted((app / "cdktf.out" / "stacks").iterdir())
        assert stacks, f"{block.where}: the app synthesized no stack"
        for stack in stacks:
            self.apply_and_destroy(stack, block)
