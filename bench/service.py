"""What every benchmark needs to run the real service: a fresh database, the `gpuinv`
command (and the platform-admin token and tenants made with it), a server process
started and stopped cleanly, and the commit it runs from.

One copy here, so that every benchmark starts, stops and labels the service the same way
and a fix to any of it (a leaked process group, a database left behind) reaches all."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg

from api.demo import TENANTS

GPUINV = Path(sys.executable).with_name("gpuinv")
ROOT = Path(__file__).resolve().parents[1]  # the checkout the benchmarks run from
DEFAULT_POSTGRES = os.environ.get(
    "GPUINV_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


class BenchError(Exception):
    """Something that makes the figures meaningless: the run stops and says why."""


def one_value(connection: psycopg.Connection[Any], query: str) -> Any:
    """The first column of the one row ``query`` answers (SHOW x, SELECT count(*) ...)."""
    row = connection.execute(query).fetchone()
    if row is None:
        raise BenchError(f"{query!r} answered no row")
    return row[0]


@contextmanager
def fresh_database(backend: str, postgres_url: str, workdir: Path, prefix: str) -> Iterator[str]:
    """A new, empty database URL; a PostgreSQL database is dropped on the way out."""
    if backend == "sqlite":
        yield f"sqlite:///{workdir / (prefix + '.db')}"  # removed with workdir
        return
    name = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def service_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "GPUINV_DATABASE_URL": database_url, **(extra or {})}


def run_gpuinv(
    database_url: str,
    *args: str,
    env: dict[str, str] | None = None,
    gpuinv: Sequence[str] = (str(GPUINV),),
    cwd: Path | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``gpuinv ARGS`` on the database, as an operator would; what it printed (stdout
    and stderr: backup and restore report on stderr). ``env``: more variables;
    ``gpuinv`` and ``cwd``: how to run it from another checkout."""
    done = subprocess.run(
        [*gpuinv, *args],
        cwd=cwd,
        env=service_env(database_url, env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"gpuinv {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return done


def cli(database_url: str, *args: str, **how: Any) -> str:
    """``gpuinv ARGS`` (``run_gpuinv``'s options); its stdout."""
    return run_gpuinv(database_url, *args, **how).stdout.strip()


def admin_token(database_url: str, name: str | None = None) -> str:
    """A new platform-admin token (``gpuinv token create``), labelled ``name``."""
    args = ["token", "create", "--role", "platform-admin"]
    return cli(database_url, *args, *(["--name", name] if name else [])).splitlines()[-1]


def create_tenants(database_url: str) -> None:
    """The demo's tenants (api/demo.py TENANTS), for fleets whose devices name them."""
    for slug, name in TENANTS:
        cli(database_url, "tenant", "create", slug, "--name", name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(process: subprocess.Popen[bytes], base_url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"gpuinv serve exited with {process.returncode} on start")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise BenchError(f"gpuinv serve did not answer /healthz within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (the server and its workers), then
    SIGKILL if it does not go within 20 s."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):  # workers a dead supervisor left behind
        os.killpg(process.pid, signal.SIGKILL)


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def git(directory: Path, *args: str) -> str:
    """``git -C DIRECTORY ARGS``: its stdout, or "" if git failed or is missing."""
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def code_version() -> str:
    """The commit the service runs from, ``+dirty`` if api/ has uncommitted changes: the
    code may change between runs while people work, so each row says what it measured."""
    head = git(ROOT, "rev-parse", "--short", "HEAD")
    if not head:
        return "?"
    return head + ("+dirty" if git(ROOT, "status", "--porcelain", "--", "api") else "")


@dataclass
class Service:
    base_url: str
    pgid: int  # the server's own process group: the server and its workers


@contextmanager
def running_service(
    database_url: str,
    workdir: Path,
    workers: int = 1,
    on_traceback: Callable[[str], None] | None = None,
    gpuinv: Sequence[str] = (str(GPUINV),),
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Service]:
    """``gpuinv serve`` in its own process group (its workers too); yields where it listens
    and always stops the whole group it started. A traceback in the server's log, which
    makes figures doubtful, goes to ``on_traceback`` (or stderr). ``gpuinv``, ``cwd`` and
    ``env``: how to run it from another checkout (bench.claims' --code-dir)."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    command = [*gpuinv, "serve", "--port", str(port), "--log-level", "warning"]
    command += ["--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env or service_env(database_url),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the server ourselves
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(process, base_url)
            yield Service(base_url, process.pid)
        except BaseException:
            print(f"--- the server log, last lines ---\n{tail(log_path)}", file=sys.stderr)
            raise
        finally:
            stop(process)
            if b"Traceback" in log_path.read_bytes():
                message = f"the server logged a traceback; last lines:\n{tail(log_path, 15)}"
                (on_traceback or (lambda m: print(m, file=sys.stderr)))(message)
