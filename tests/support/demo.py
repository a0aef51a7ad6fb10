"""`gpuinv serve --demo` as a newcomer starts it: a process of its own, a fresh SQLite
database, the demo's fleet, profiles and token. The documented examples (tests/docs) and the
IaC examples (tests/iac/test_examples.py) run against it with nothing else set up.

A pytest plugin (tests/conftest.py registers it): the ``demo`` fixture, one per module."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.ci import IN_CI

BIN = Path(sys.executable).parent
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
        message = "the `terraform` command is required on PATH for the documented examples"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


@contextmanager
def serve_demo(home: Path) -> Iterator[Demo]:
    """`gpuinv serve --demo` in ``home`` (its working directory and $HOME), on a free port."""
    database_url = f"sqlite:///{home / 'gpuinv.db'}"
    port = _free_port()
    env = {**os.environ, "GPUINV_DATABASE_URL": database_url, "HOME": str(home)}
    with (home / "serve.log").open("w") as log:
        server = subprocess.Popen(
            [BIN / "gpuinv", "serve", "--demo", "--port", str(port)],
            cwd=home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            token = server.stdout.readline().strip()  # the demo prints its token alone
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None, (home / "serve.log").read_text()[-3000:]
                time.sleep(0.1)
            assert token, (home / "serve.log").read_text()[-3000:]
            yield Demo(url, token, database_url, home)
        finally:
            server.terminate()
            server.wait(30)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with serve_demo(tmp_path_factory.mktemp("newcomer")) as running:
        yield running
