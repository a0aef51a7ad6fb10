"""`gpuinv` as operators run it: the installed command (``GPUINV``), and `gpuinv serve` in a
process of its own, for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.server import free_port

GPUINV = str(Path(sys.executable).with_name("gpuinv"))


def run_cli(
    args: list[str],
    env: dict[str, str],
    cwd: Path | None = None,
    check: bool = True,
    command: str = GPUINV,
) -> subprocess.CompletedProcess[str]:
    """``gpuinv ARGS`` (or ``command``) as a user runs it: its own process, in ``cwd``,
    with exactly ``env``; ``check``: a failure raises, showing its stderr."""
    done = subprocess.run(
        [command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{command} {' '.join(args)} failed:\n{done.stderr}")
    return done


@contextmanager
def serving(database_url: str, tmp_path: Path, *args: str) -> Iterator[tuple[str, Path]]:
    """``gpuinv serve ARGS``; yields its base URL and the file its stderr goes to."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {**os.environ, "GPUINV_DATABASE_URL": database_url}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("w") as sink:
        process = subprocess.Popen(
            [GPUINV, "serve", "--port", str(port), *args],
            env=env,
            stdout=sink,
            stderr=sink,
            cwd=tmp_path,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not come up:\n" + log.read_text()
            time.sleep(0.2)
        yield base, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def token(database_url: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [GPUINV, "token", "create", "--role", "platform-admin", "--name", "ops-test"],
        env={**os.environ, "GPUINV_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    return done.stdout.strip()
