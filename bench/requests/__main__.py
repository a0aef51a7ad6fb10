"""``python -m bench.requests``: the command line, and one replay per mode, each on a fresh
database; what they measure and why is in bench/requests/__init__.py."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

import bench.requests as package
from bench.claims.code import describe
from bench.options import postgres_reachable
from bench.report import finish, problem, progress
from bench.requests.checks import DatabaseWatch, over_allocation
from bench.requests.replay import MODES, Mode, ModeRun, Replay
from bench.requests.report import report
from bench.requests.workload import (
    GPUS_PER_SERVER,
    PROFILE_TYPES,
    Arrival,
    TenantSpec,
    arrivals,
    fleet_documents,
    profile_labels,
    tenant_specs,
)
from bench.service import (
    DEFAULT_POSTGRES,
    ROOT,
    admin_token,
    cli,
    fresh_database,
    running_service,
    service_env,
)


def prepare(
    url: str, workdir: Path, fleet_file: Path, tenants: list[TenantSpec], mode: Mode, gpus: int
) -> tuple[str, dict[str, str]]:
    """Schema, fleet, profiles, tenants (with quotas if the mode has them) and tokens, with
    the CLI; the platform admin's token and each tenant's partner-admin token."""
    cli(url, "db", "upgrade")
    progress(f"  gpuinv import: {cli(url, 'import', str(fleet_file))}")
    for name in PROFILE_TYPES:
        path = workdir / f"{name}.json"
        path.write_text(json.dumps(profile_labels(name)))
        cli(url, "profile", "save", name, str(path))
    tokens = {}
    for t in tenants:
        quota = ["--gpus", str(t.quota_gpus(gpus))] if mode.quotas else []
        cli(url, "tenant", "create", t.slug, *quota)
        role = ["--role", "partner-admin", "--tenant", t.slug, "--name", f"sim-{t.slug}"]
        tokens[t.slug] = cli(url, "token", "create", *role).splitlines()[-1]
    return admin_token(url, "sim-platform"), tokens


def one_mode(
    mode: Mode,
    args: argparse.Namespace,
    day: list[Arrival],
    tenants: list[TenantSpec],
    fleet_file: Path,
    runs: list[ModeRun],
) -> None:
    gpus = args.servers * GPUS_PER_SERVER
    run = ModeRun(mode, args.speed, describe(ROOT))
    backfill = args.backfill_minutes * 60 / args.speed
    settings = {
        "GPUINV_QUEUE_POLL_SECONDS": str(args.queue_poll),
        "GPUINV_PREEMPTION_GRACE_SECONDS": str(args.grace_minutes * 60 / args.speed),
        "GPUINV_QUEUE_BACKFILL_SECONDS": str(backfill),
    }
    with (
        tempfile.TemporaryDirectory(prefix="gpuinv-requests-") as tmp,
        fresh_database(args.backend, args.database_url, Path(tmp), "bench_requests") as url,
    ):
        started = time.perf_counter()
        admin, tokens = prepare(url, Path(tmp), fleet_file, tenants, mode, gpus)
        watch = DatabaseWatch(url, backfill, args.stuck_every)
        try:
            env = service_env(url, settings)
            with running_service(url, Path(tmp), env=env, on_traceback=problem) as service:
                progress(
                    f"[{mode.name}] set up in {time.perf_counter() - started:.1f} s; replaying "
                    f"{len(day)} arrivals over {args.hours * 3600 / args.speed / 60:.1f} min"
                )
                runs.append(run)
                replay = Replay(run, service.base_url, admin, tokens, args.poll, watch)
                replay.replay(day, args.hours)
        finally:
            watch.close()
        run.checks += over_allocation(url)
    held = sum(j.gpus for j in run.jobs if j.held)
    progress(f"[{mode.name}] done: {len(run.jobs)} requests, {held} GPUs held at the end")


def _percents(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 0:
        raise argparse.ArgumentTypeError("three numbers, comma-separated, e.g. 40,35,25")
    return values


def _modes(text: str) -> list[Mode]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names or any(n not in MODES for n in names):
        raise argparse.ArgumentTypeError(f"modes from {', '.join(MODES)}, comma-separated")
    return [MODES[n] for n in names]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    about = (package.__doc__ or "").split("\nThe package:")[0]
    parser = argparse.ArgumentParser(
        prog="python -m bench.requests",
        description=about,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--servers", type=int, default=64, help="8-GPU servers in the fleet (default: 64)")
    add(
        "--quotas",
        type=_percents,
        default=[40.0, 35.0, 25.0],
        help="the three tenants' GPU quotas, percent of the fleet (default: 40,35,25)",
    )
    add(
        "--demand",
        type=_percents,
        default=[50.0, 30.0, 20.0],
        help="their shares of the GPU-hours asked (default: 50,30,20)",
    )
    add(
        "--load",
        type=float,
        default=0.9,
        help="GPU-hours asked over a whole day / the fleet's GPU-hours (default: 0.9)",
    )
    add("--start", type=float, default=0.0, help="the hour of the day to start at (default: 0)")
    add("--hours", type=float, default=24.0, help="simulated hours to replay (default: 24)")
    add("--speed", type=float, default=100.0, help="simulated seconds a real one (default: 100)")
    add(
        "--modes",
        type=_modes,
        default=[MODES["queue"], MODES["fcfs"]],
        help=f"modes to run, in order, from {', '.join(MODES)} (default: queue,fcfs)",
    )
    add(
        "--grace-minutes",
        type=float,
        default=5.0,
        help="preemption grace, simulated minutes (default: 5, the service's 300 s)",
    )
    add(
        "--backfill-minutes",
        type=float,
        default=10.0,
        help="backfill window, simulated minutes (default: 10, the service's 600 s)",
    )
    add(
        "--queue-poll",
        type=float,
        default=0.2,
        help="GPUINV_QUEUE_POLL_SECONDS, real seconds (default: 0.2)",
    )
    add(
        "--poll",
        type=float,
        default=0.25,
        help="the client's poll of open requests, real seconds (default: 0.25)",
    )
    add(
        "--stuck-every",
        type=float,
        default=5.0,
        help="real seconds between samples for stuck requests; 0: none (default: 5)",
    )
    add(
        "--backend",
        choices=["postgresql", "sqlite"],
        default="postgresql",
        help="the service's database (default: postgresql)",
    )
    add(
        "--database-url",
        default=DEFAULT_POSTGRES,
        help="PostgreSQL admin URL; each mode creates and drops its database bench_requests_* "
        f"(default: $GPUINV_BENCH_POSTGRES_URL or {DEFAULT_POSTGRES})",
    )
    add("--seed", type=int, default=42, help="random seed (default: 42)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.servers < 1 or args.hours <= 0 or args.speed <= 0 or args.load <= 0:
        parser.error("--servers, --hours, --speed and --load must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend == "postgresql" and not postgres_reachable(args.database_url):
        return 2
    gpus = args.servers * GPUS_PER_SERVER
    tenants = tenant_specs(args.quotas, args.demand)
    day = arrivals(tenants, gpus, args.load, args.start, args.hours, args.seed)
    code = describe(ROOT)
    progress(f"code {code}; {len(day)} arrivals over {args.hours:g} h on {gpus} GPUs")
    runs: list[ModeRun] = []

    def work() -> None:
        with tempfile.TemporaryDirectory(prefix="gpuinv-requests-fleet-") as tmp:
            fleet_file = Path(tmp) / "fleet.json"
            fleet_file.write_text(json.dumps({"devices": fleet_documents(args.servers, args.seed)}))
            for mode in args.modes:
                one_mode(mode, args, day, tenants, fleet_file, runs)

    return finish(work, lambda: report(args, runs, day, tenants, gpus, code))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
