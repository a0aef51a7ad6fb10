"""The code under test: this checkout, or another one (``--code-dir``, e.g. a git worktree
of an older commit for a "before" figure): how to run its ``gpuinv``, which version it
is, and the fleet, profiles and token a run starts from.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from bench.claims.workload import CONFIG, PROFILE_TYPES
from bench.report import problem, progress
from bench.service import GPUINV, ROOT, Service, cli, git, running_service, service_env


def describe(directory: Path) -> str:
    """``git describe`` of DIR, and, when api/ has uncommitted changes, which files and a
    hash of the diff (the tree may change between runs while people work)."""
    described = git(directory, "describe", "--always", "--tags") or "?"
    head = git(directory, "rev-parse", "--short", "HEAD")
    if head and head not in described:
        described += f" ({head})"
    changed = git(directory, "status", "--porcelain", "--", "api").splitlines()
    if not changed:
        return described
    diff = subprocess.run(
        ["git", "-C", str(directory), "diff", "HEAD", "--", "api"],
        capture_output=True,
        check=False,
    ).stdout
    names = ", ".join(line.split(None, 1)[-1] for line in changed)
    return f"{described}+dirty:{hashlib.sha1(diff).hexdigest()[:8]} ({names})"


@dataclass(frozen=True)
class Code:
    """How to run ``gpuinv`` from a checkout."""

    directory: Path | None  # None: this checkout's console script

    def command(self) -> list[str]:
        return [str(GPUINV)] if self.directory is None else [sys.executable, "-m", "api.cli"]

    def env(self, database_url: str) -> dict[str, str]:
        extra = {} if self.directory is None else {"PYTHONPATH": str(self.directory)}
        return service_env(database_url, extra)

    @property
    def cwd(self) -> Path | None:
        return self.directory

    def version(self) -> str:
        return describe(self.directory or ROOT)

    def api_path(self) -> str:
        """Where the servers' ``api`` package comes from, asked of the same interpreter,
        directory and environment the servers get."""
        done = subprocess.run(
            [sys.executable, "-c", "import api, os; print(os.path.dirname(api.__file__))"],
            cwd=self.cwd,
            env=self.env(""),
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.strip() or f"? ({done.stderr.strip()[-200:]})"

    def cli(self, database_url: str, *args: str) -> str:
        extra = {} if self.directory is None else {"PYTHONPATH": str(self.directory)}
        return cli(database_url, *args, env=extra, gpuinv=self.command(), cwd=self.cwd, timeout=600)


def serving(
    code: Code, database_url: str, workdir: Path, workers: int
) -> AbstractContextManager[Service]:
    """``gpuinv serve --workers N`` of ``code``'s checkout (bench.service); a traceback in
    its log is a problem."""
    return running_service(
        database_url,
        workdir,
        workers,
        on_traceback=problem,
        gpuinv=code.command(),
        cwd=code.cwd,
        env=code.env(database_url),
    )


# Who claims (--caller): a platform-wide token (no tenant: counted nowhere); a tenant's
# provisioner (its usage counted, no quota); or the same under a quota no claim reaches,
# so that every claim goes through the quota step and the limit check.
CALLERS = ("platform", "tenant", "quota")
BENCH_TENANT = "bench-tenant"


def prepare(code: Code, url: str, workdir: Path, fleet_file: Path, caller: str) -> str:
    """Fleet, profiles and a token of ``caller``'s kind, through the CLI; the token."""
    said = code.cli(url, "import", str(fleet_file))
    progress(f"  gpuinv import: {said}")
    for name, inventory_type in PROFILE_TYPES.items():
        labels = {
            "paas.envmgmt.io/inventory": inventory_type,
            "paas.envmgmt.io/inventory.config": json.dumps(CONFIG),
        }
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(labels))
        code.cli(url, "profile", "save", name, str(path))
    if caller == "platform":
        return code.cli(url, "token", "create", "--role", "platform-admin", "--name", "claims")
    quota = ["--gpus", "1000000", "--nodes", "100000"] if caller == "quota" else []
    code.cli(url, "tenant", "create", BENCH_TENANT, *quota)
    return code.cli(
        url,
        "token",
        "create",
        "--role",
        "provisioner",
        "--tenant",
        BENCH_TENANT,
        "--name",
        "claims",
    )
