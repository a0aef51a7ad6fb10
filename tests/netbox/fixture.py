"""A real NetBox 4.7.3 for the sync worker's tests, installed from PyPI on this machine.

Why a real one: the sync worker talks to NetBox's REST API and receives its webhooks, and a
mock would only repeat our assumptions about them. Why it is fast enough: everything slow
happens once and is kept under ``~/.cache/gpuinv-netbox`` (``GPUINV_NETBOX_HOME``):

* the venv (``pip install netbox==4.7.3 gunicorn``; psycopg[c] is compiled): about a minute;
* a *template* database restored from the migrated dump next to this file (~15 s instead of
  ~6 min of migrations), holding a superuser and a v2 API token;
* the running gunicorn and rqworker, kept up while any pytest process uses them.

A clean NetBox for one test is then ``CREATE DATABASE ... TEMPLATE`` plus a Redis flush
(:func:`netbox_reset`, 0.5-2 s) while the processes keep running: ``CONN_HEALTH_CHECKS`` lets
Django reconnect after the working database was dropped under it.

Loopback only: PostgreSQL 127.0.0.1:5432 (user postgres, trust auth), Redis 127.0.0.1:6379
(DBs 12 and 13, ``GPUINV_NETBOX_REDIS_DBS``), NetBox on 127.0.0.1:8011 (``GPUINV_NETBOX_PORT``).
Names, port and Redis DBs differ from the shared ``netbox-up`` script's defaults, so both can
run side by side. Another port is another NetBox (its own run directory, configuration and
working database; the venv and template are shared): give it other Redis DBs too.

Who stops it: a NetBox started by hand (``up``, ``reset``) stays up until ``down``. One that
a pytest session started is stopped when the last pytest process using it ends
(:func:`netbox_session`; each registers in ``run/users/``), so a run leaves nothing behind.

    python -m tests.netbox.fixture up|reset|down|status   # prints export NETBOX_URL/TOKEN lines
    python -m tests.netbox.fixture up --sample             # emptied, then a small GPU fleet
    python -m tests.netbox.fixture down --purge            # also drop its database and run dir
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    import pynetbox

VERSION = "4.7.3"
FIXTURE_SCHEMA = 1  # bump when provisioning changes: every template is then rebuilt
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
HOME = Path(os.environ.get("GPUINV_NETBOX_HOME") or _CACHE / "gpuinv-netbox")
DEFAULT_PORT = 8011
PORT = int(os.environ.get("GPUINV_NETBOX_PORT") or DEFAULT_PORT)
HOST = "127.0.0.1"  # NetBox, PostgreSQL and Redis: loopback only
URL = f"http://{HOST}:{PORT}"
PG = {"host": HOST, "port": 5432, "user": "postgres"}
_INSTANCE = "" if PORT == DEFAULT_PORT else f"-{PORT}"  # another port: another NetBox
DB, TEMPLATE = "gpuinv_netbox" + _INSTANCE.replace("-", "_"), "gpuinv_netbox_template"
REDIS_PORT = 6379
_REDIS_DBS = os.environ.get("GPUINV_NETBOX_REDIS_DBS") or "12,13"  # tasks, cache
TASKS_DB, CACHE_DB = (int(n) for n in _REDIS_DBS.split(","))
ADMIN_USER, ADMIN_PASSWORD = "admin", "gpuinv-netbox-admin-1"

VENV = HOME / f"venv-{VERSION}"
ROOT = HOME / f"root{_INSTANCE}"  # NETBOX_ROOT: the wheel reads ROOT/conf/configuration.py
STATE = HOME / "state"  # secrets, generated once and kept (mode 700)
RUN = HOME / f"run{_INSTANCE}"  # pid files, logs, who started the processes, who uses them
OWNER = RUN / "owner"  # "hand" or "tests": who started the running processes
USERS = RUN / "users"  # one file per pytest process using this NetBox: "<pid> <start time>"
IN_USE_LOCK = RUN / "in-use.lock" if _INSTANCE else HOME / "in-use.lock"
SEED = Path(__file__).with_name(f"seed-netbox-{VERSION}.sql.gz")
PROCESSES = ("gunicorn", "rqworker")
LOCK_TIMEOUT, READY_TIMEOUT, STOP_TIMEOUT = 1200, 180, 15  # seconds


class NetBoxError(RuntimeError):
    """NetBox could not be brought up; the message names the step and shows its log's tail."""


@dataclass(frozen=True)
class NetBox:
    """A running NetBox: its base URL and a write-enabled v2 API token (``nbt_<key>.<secret>``)."""

    url: str
    token: str

    def api(self) -> pynetbox.api:
        """A pynetbox client whose requests time out (60 s) rather than hang a test."""
        import pynetbox
        import requests

        class TimeoutSession(requests.Session):
            def request(self, *args: Any, **kwargs: Any) -> requests.Response:
                kwargs.setdefault("timeout", 60)
                return super().request(*args, **kwargs)

        api = pynetbox.api(self.url, token=self.token)
        api.http_session = TimeoutSession()
        return api

    def env(self) -> dict[str, str]:
        return {"NETBOX_URL": self.url, "NETBOX_TOKEN": self.token}


def netbox_up(by_hand: bool = False) -> NetBox:
    """Install, build, create and start whatever is missing, then wait until NetBox answers.

    Idempotent, and cheap when all is up already: a few checks and one HTTP request.
    ``by_hand``: the caller is a person (the command line), who keeps it up until ``down``;
    a pytest session's NetBox stops when the session ends (:func:`netbox_session`).
    """
    with _locked():
        return _up(reset=False, by_hand=by_hand)


def netbox_reset(by_hand: bool = False) -> NetBox:
    """An empty NetBox (IDs restart at 1): working DB recloned, Redis flushed, processes kept."""
    with _locked():
        return _up(reset=True, by_hand=by_hand)


def netbox_down(purge: bool = False) -> None:
    """Stop the gunicorn and rqworker this fixture started; databases and venv are kept.

    ``purge``: also drop this NetBox's working database and its run and root directories
    (the template and the venv, shared by every port, are kept).
    """
    with _locked():
        _stop_all()
        if purge:
            with _pg() as conn:
                _drop(conn, DB)
            for path in (RUN, ROOT):
                shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def netbox_in_use() -> Iterator[None]:
    """Hold while a test uses NetBox: another process's reset then waits for the test's end.

    One NetBox serves every pytest process on the machine: xdist workers (when ``--dist
    loadgroup`` does not keep them together) and concurrent runs.
    """
    with _locked(IN_USE_LOCK):
        yield


def netbox_running() -> bool:
    return all(_alive(name) for name in PROCESSES)


def netbox_session_start() -> NetBox:
    """This pytest process uses NetBox from now on: registered as a user, and NetBox up.

    Every process that calls this must call :func:`netbox_session_end` when it is done
    (a process that dies without doing so is found dead and dropped by the next one).
    """
    with _locked():
        USERS.mkdir(parents=True, exist_ok=True)
        (USERS / str(os.getpid())).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
        try:
            return _up(reset=False, by_hand=False)
        except BaseException:
            (USERS / str(os.getpid())).unlink(missing_ok=True)
            if not _users() and _read(OWNER) == "tests":  # e.g. gunicorn died, rqworker not
                with contextlib.suppress(NetBoxError):
                    _stop_all()
            raise


def netbox_session_end() -> bool:
    """This pytest process is done with NetBox. When no other live pytest process uses it,
    stop the processes if a pytest session started them (not when they were started by hand
    or ``GPUINV_NETBOX_KEEP=1``; ``GPUINV_NETBOX_STOP=1`` stops them either way). Returns
    whether it stopped them.

    Under pytest-xdist each worker is a process of its own, registered on first use of the
    ``netbox`` fixture: the last worker to finish stops NetBox, whichever started it.
    """
    with _locked():
        (USERS / str(os.getpid())).unlink(missing_ok=True)
        if _users():  # without waiting for their running tests' in-use lock
            return False
    with netbox_in_use(), _locked():  # not under a running test of a process not registered
        if _users():  # one registered meanwhile
            return False
        if os.environ.get("GPUINV_NETBOX_KEEP") == "1" and netbox_running():
            OWNER.write_text("hand\n")  # kept as if started by hand: the next run leaves it too
            return False
        stop = os.environ.get("GPUINV_NETBOX_STOP") == "1" or _read(OWNER) == "tests"
        if stop and any(_alive(n) for n in PROCESSES):
            _log(f"the last pytest process using NetBox on {URL} is done: stopping it")
            _stop_all()
            return True
        return False


@contextlib.contextmanager
def netbox_session() -> Iterator[NetBox]:
    """:func:`netbox_session_start` ... :func:`netbox_session_end`."""
    running = netbox_session_start()
    try:
        yield running
    finally:
        netbox_session_end()


def _users() -> list[int]:
    """The live pytest processes registered as users (the files of dead ones are removed)."""
    live = []
    for path in USERS.glob("*") if USERS.is_dir() else ():
        try:
            pid, started = path.read_text().split()
            if _start_time(int(pid)) == started:
                live.append(int(pid))
                continue
        except (OSError, ValueError):
            pass
        path.unlink(missing_ok=True)
    return live


# --------------------------------------------------------------------------- the steps


def _up(reset: bool, by_hand: bool) -> NetBox:
    started = time.monotonic()
    _install()
    token = _write_config()
    _wait_for_services()
    fingerprint = _fingerprint()
    config = hashlib.sha256((ROOT / "conf/configuration.py").read_bytes()).hexdigest()[:12]
    started_with = f"{fingerprint} config={config} port={PORT} db={DB} venv={VENV}"
    if any(_alive(n) for n in PROCESSES) and _read(RUN / "running") != started_with:
        _log("the running processes were started with other settings: restarting them")
        _stop_all()
    if _db_comment(TEMPLATE) != f"gpuinv-netbox template {fingerprint}":
        _build_template(fingerprint)
        reset = True
    if reset or _db_comment(DB) != f"gpuinv-netbox working {fingerprint}":
        _clone_working_db(fingerprint)
    started_now = _start_processes()
    (RUN / "running").write_text(started_with)
    if by_hand:
        OWNER.write_text("hand\n")  # kept up until `down`, even if a pytest session started it
    elif started_now == set(PROCESSES):
        OWNER.write_text("tests\n")  # stopped by the last pytest process using it
    # else: one process restarted beside a running one: whoever started that one owns both
    _wait_ready(token)
    _log(f"NetBox {VERSION} ready on {URL} ({time.monotonic() - started:.1f}s)")
    return NetBox(URL, token)


def _install() -> None:
    """The venv, made once from this interpreter (3.12+, as NetBox 4.7 needs)."""
    marker, wanted = VENV / ".gpuinv-netbox-ok", f"netbox=={VERSION} gunicorn"
    if _read(marker) == wanted and (VENV / "bin/gunicorn").exists():
        return
    started = time.monotonic()
    if not (VENV / "bin/python").exists():
        shutil.rmtree(VENV, ignore_errors=True)  # a half-made venv from an interrupted run
        _run([sys.executable, "-m", "venv", str(VENV)], "python -m venv", timeout=300)
    _log(f"pip install {wanted} (psycopg[c] is compiled; log in {RUN})")
    pip = [str(VENV / "bin/python"), "-m", "pip", "install", "--disable-pip-version-check"]
    _run([*pip, f"netbox=={VERSION}", "gunicorn"], "pip install netbox", timeout=1800)
    marker.write_text(wanted)
    _log(f"NetBox installed in {time.monotonic() - started:.1f}s")


def _write_config() -> str:
    """NETBOX_ROOT/conf/configuration.py, from secrets kept in STATE; returns the API token."""
    for path in (STATE, RUN, *(ROOT / d for d in ("conf", "media", "scripts", "reports"))):
        path.mkdir(parents=True, exist_ok=True)
    STATE.chmod(0o700)
    secret_key = _secret("secret_key", lambda: _random(60))
    pepper = _secret("pepper", lambda: _random(64))  # NetBox wants 50+ characters
    token = _secret("token", lambda: f"nbt_{_random(12)}.{_random(40)}")
    redis = {"HOST": HOST, "PORT": REDIS_PORT, "USERNAME": "", "PASSWORD": "", "SSL": False}
    config = f"""\
# Written by tests/netbox/fixture.py on every run; the secrets are kept in {STATE}.
import os

ALLOWED_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        # the template is built under another name, which the fixture passes here
        "NAME": os.environ.get("GPUINV_NETBOX_DB_NAME", {DB!r}),
        "USER": {PG["user"]!r},
        "PASSWORD": "",
        "HOST": {PG["host"]!r},
        "PORT": {str(PG["port"])!r},
        "CONN_MAX_AGE": 300,
        # a reset drops the database under the running workers: check before reuse
        "CONN_HEALTH_CHECKS": True,
    }}
}}
REDIS = {{
    "tasks": {redis | {"DATABASE": TASKS_DB}!r},
    "caching": {redis | {"DATABASE": CACHE_DB}!r},
}}
SECRET_KEY = {secret_key!r}
API_TOKEN_PEPPERS = {{1: {pepper!r}}}  # v2 tokens are stored as an HMAC keyed by this
# a test fixture: no phoning home, no release checks
ISOLATED_DEPLOYMENT = True
CENSUS_REPORTING_ENABLED = False
RELEASE_CHECK_URL = None
TIME_ZONE = "UTC"


def _log_500(sender, request=None, **kwargs):  # API 500s are answered without a log line
    import logging

    logging.getLogger("gpuinv.netbox").exception("500 on %s %s", request.method, request.path)


from django.core.signals import got_request_exception  # noqa: E402

got_request_exception.connect(_log_500, weak=False)
"""
    path = ROOT / "conf/configuration.py"
    if _read(path) != config.strip():
        path.write_text(config)
    (ROOT / "conf/__init__.py").touch()
    return token


def _fingerprint() -> str:
    """What the template was provisioned with (a change rebuilds it): version, pepper, token."""
    parts = [str(FIXTURE_SCHEMA), VERSION, ADMIN_USER, ADMIN_PASSWORD]
    parts += [_read(STATE / "pepper"), _read(STATE / "token")]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _build_template(fingerprint: str) -> None:
    """Seed restore (or all migrations), ``migrate`` as a check, superuser + token; rename.

    Built as ``<template>_build`` and renamed only when complete, so an interrupted build never
    leaves a half-made template. ``ALLOW_CONNECTIONS false``: ``CREATE DATABASE ... TEMPLATE``
    fails while anything is connected to the template.
    """
    started, build = time.monotonic(), f"{TEMPLATE}_build"
    with _pg() as conn:
        _drop(conn, build)
        create = "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'"  # NetBox needs UTF8
        conn.execute(sql.SQL(create).format(sql.Identifier(build)))
    if SEED.exists() and shutil.which("psql"):
        _log(f"building template {TEMPLATE} from {SEED.name}")
        with gzip.open(SEED, "rb") as f:  # psql < 15.14 rejects pg_dump's \restrict lines
            dump = b"".join(line for line in f if not re.match(rb"\\(un)?restrict ", line))
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", str(PG["port"])]
        _run([*psql, "-U", PG["user"], "-d", build], "seed restore", 600, stdin=dump)
    else:
        _log(f"no seed or no psql: building {TEMPLATE} by running all migrations (~6 min)")
    # after a seed restore this only checks that no migration is left to apply
    _run(_netbox("migrate", "--no-input"), "netbox migrate", 1800, env=_netbox_env(build))
    env = _netbox_env(build) | {"GPUINV_NETBOX_TOKEN": _read(STATE / "token")}
    _run([str(VENV / "bin/python"), "-c", _PROVISION], "provision", 300, env=env)
    with _pg() as conn:
        _drop(conn, TEMPLATE)
        name, comment = sql.Identifier(TEMPLATE), f"gpuinv-netbox template {fingerprint}"
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(build), name))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(comment)))
        conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(name))
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name))
    _log(f"template {TEMPLATE} built in {time.monotonic() - started:.1f}s")


# Runs in the NetBox venv against the database being built. NetBox keeps only an HMAC of the
# token, so the plaintext is ours (STATE/token) and is passed in through the environment.
_PROVISION = f"""
import os, django
django.setup()
from users.models import Token, User
key, plain = os.environ["GPUINV_NETBOX_TOKEN"].removeprefix("nbt_").split(".", 1)
user = User.objects.filter(username={ADMIN_USER!r}).first() or User.objects.create_superuser(
    {ADMIN_USER!r}, "admin@example.invalid", {ADMIN_PASSWORD!r})
Token.objects.filter(key=key).delete()
token = Token(user=user, key=key, token=plain, write_enabled=True, description="gpuinv tests")
token.save()
assert token.validate(plain), "the token does not validate against the configured pepper"
"""


def _clone_working_db(fingerprint: str) -> None:
    """Drop the working DB (cutting live connections), reclone it, flush Redis."""
    started = time.monotonic()
    with _pg() as conn:
        _drop(conn, DB)
        name, comment = sql.Identifier(DB), f"gpuinv-netbox working {fingerprint}"
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(name, sql.Identifier(TEMPLATE))
        )
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(comment)))
    with _Redis(CACHE_DB) as cache, _Redis(TASKS_DB) as tasks:
        cache.call("FLUSHDB")
        if not any(_alive(n) for n in PROCESSES):
            tasks.call("FLUSHDB")
        else:  # drop queued jobs and results, keep the live rqworker's registration
            keep = (b"rq:worker:", b"rq:workers", b"rq:scheduler", b"rq:queues", b"rq:pubsub")
            cursor = b"0"
            while True:
                cursor, keys = tasks.call("SCAN", cursor, "COUNT", "1000")
                if doomed := [k for k in keys if not k.startswith(keep)]:
                    tasks.call("DEL", *doomed)
                if cursor == b"0":
                    break
    _log(f"working database {DB} cloned from {TEMPLATE} in {time.monotonic() - started:.1f}s")


def _start_processes() -> set[str]:
    """gunicorn and the rqworker (webhooks need it), each in its own session, pid files in RUN.
    Returns the names of those it started."""
    started = set()
    if not _alive("gunicorn"):
        with contextlib.suppress(OSError), socket.create_connection((HOST, PORT), timeout=1):
            raise NetBoxError(f"something else listens on {HOST}:{PORT} (see GPUINV_NETBOX_PORT)")
        _spawn("gunicorn", [
            str(VENV / "bin/gunicorn"), "--bind", f"{HOST}:{PORT}", "--chdir", str(ROOT),
            "--workers", "2", "--threads", "4", "--timeout", "120", "--graceful-timeout", "5",
            "--preload", "--no-control-socket",  # the default ~/.gunicorn socket is shared
            "--access-logfile", str(RUN / "access.log"), "netbox.wsgi",
        ])  # fmt: skip
        started.add("gunicorn")
    if not _alive("rqworker"):
        _spawn("rqworker", _netbox("rqworker", "high", "default", "low"))
        started.add("rqworker")
    return started


def _wait_ready(token: str) -> None:
    """Bounded wait for /api/status/ = 200 with the token and a registered rqworker."""
    deadline, last = time.monotonic() + READY_TIMEOUT, "no answer"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    request = urllib.request.Request(f"{URL}/api/status/", headers=headers)
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if json.loads(response.read()).get("rq-workers-running", 0) >= 1:
                    return
                last = "200, but no rqworker registered yet"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            last = repr(exc)
        for name in PROCESSES:
            if not _alive(name):
                raise NetBoxError(f"{name} exited during start-up:\n{_tail(RUN / f'{name}.log')}")
        if time.monotonic() > deadline:
            logs = "\n".join(_tail(RUN / f"{name}.log") for name in PROCESSES)
            raise NetBoxError(f"NetBox not ready within {READY_TIMEOUT}s (last: {last}):\n{logs}")
        time.sleep(0.3)


# --------------------------------------------------------------------------- processes


def _spawn(name: str, argv: list[str]) -> None:
    """Start a detached process in its own session (no terminal signals, its own group)."""
    with open(RUN / f"{name}.log", "ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=ROOT, env=_netbox_env(DB), start_new_session=True,
        )  # fmt: skip
    (RUN / f"{name}.pid").write_text(f"{process.pid} {_start_time(process.pid)}\n")
    _log(f"{name} started (pid {process.pid}), log {RUN / f'{name}.log'}")


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks after boot); None when it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(name: str) -> bool:
    """Is RUN/<name>.pid alive *and* the very process we started (a pid can be reused)?"""
    try:
        pid, started = _read(RUN / f"{name}.pid").split()
        return _start_time(int(pid)) == started
    except ValueError:
        return False


def _stop_all() -> None:
    """SIGTERM, a bounded wait, then SIGKILL to the process group (its own session's)."""
    pids = {n: int(_read(RUN / f"{n}.pid").split()[0]) for n in PROCESSES if _alive(n)}
    for name, pid in pids.items():
        _log(f"stopping {name} (pid {pid})")
        os.kill(pid, signal.SIGTERM)
    for name, pid in pids.items():
        if not _gone(name, pid, STOP_TIMEOUT):
            _log(f"{name} still alive after {STOP_TIMEOUT}s: SIGKILL to its process group")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            if not _gone(name, pid, 5):
                raise NetBoxError(f"{name} (pid {pid}) would not die")
    for name in PROCESSES:
        (RUN / f"{name}.pid").unlink(missing_ok=True)
    OWNER.unlink(missing_ok=True)


def _gone(name: str, pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(name):
        with contextlib.suppress(ChildProcessError):  # reap it when it is our own child
            os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --------------------------------------------------------------------------- helpers


def _netbox(*args: str) -> list[str]:
    return [str(VENV / "bin/netbox"), *args]  # the wheel's manage.py


def _netbox_env(db: str) -> dict[str, str]:
    """Our environment, less what could change the config or packages NetBox loads."""
    drop = {"NETBOX_CONFIGURATION", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {
        "NETBOX_ROOT": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "netbox.settings",
        "GPUINV_NETBOX_DB_NAME": db,
        "PYTHONUNBUFFERED": "1",
    }


def _run(
    argv: list[str],
    what: str,
    timeout: float,
    env: dict[str, str] | None = None,
    stdin: bytes = b"",
) -> None:
    """Run one step with a timeout, output to RUN/<what>.log; on failure raise with its tail."""
    RUN.mkdir(parents=True, exist_ok=True)
    log = RUN / (re.sub(r"\W+", "-", what) + ".log")
    try:
        with open(log, "wb") as out:
            code = subprocess.run(
                argv, input=stdin, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=HOME,
                timeout=timeout,
            ).returncode  # fmt: skip
    except subprocess.TimeoutExpired:
        raise NetBoxError(f"{what} timed out after {timeout}s; {log}:\n{_tail(log)}") from None
    if code:
        raise NetBoxError(f"{what} failed (exit {code}); {log}:\n{_tail(log)}")


@contextlib.contextmanager
def _locked(path: Path = HOME / "up.lock") -> Iterator[None]:
    """An exclusive flock, so parallel pytest workers or runs queue instead of colliding.

    ``up.lock`` is one for every port (they share the template); ``IN_USE_LOCK`` is per port.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NetBoxError(f"{path} held over {LOCK_TIMEOUT}s") from None
                time.sleep(0.2)
        yield  # closing the file releases the lock


def _pg() -> psycopg.Connection:
    return psycopg.connect(**PG, dbname="postgres", autocommit=True, connect_timeout=5)


def _db_comment(name: str) -> str | None:
    """The comment on database ``name`` ('' when none); None when it does not exist."""
    query = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
    with _pg() as conn:
        row = conn.execute(query, (name,)).fetchone()
    return None if row is None else (row[0] or "")


def _drop(conn: psycopg.Connection, name: str) -> None:
    """DROP ... WITH (FORCE), un-templating first (a template cannot be dropped)."""
    if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        for change in ("IS_TEMPLATE false", "ALLOW_CONNECTIONS true"):
            conn.execute(sql.SQL(f"ALTER DATABASE {{}} {change}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class _Redis:
    """Just enough RESP for PING, FLUSHDB, SCAN and DEL: the project venv has no Redis client."""

    def __init__(self, db: int = 0):
        self.sock = socket.create_connection((HOST, REDIS_PORT), timeout=5)
        self.reader = self.sock.makefile("rb")
        self.call("SELECT", str(db))

    def __enter__(self) -> _Redis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.sock.close()

    def call(self, *args: str | bytes) -> Any:
        parts = [a if isinstance(a, bytes) else a.encode() for a in args]
        frames = b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        self.sock.sendall(b"*%d\r\n" % len(parts) + frames)
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()
        kind, rest = line[:1], line[1:].rstrip(b"\r\n")
        if kind == b"+":
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if int(rest) < 0 else self.reader.read(int(rest) + 2)[:-2]
        if kind == b"*":
            return [self._reply() for _ in range(max(int(rest), 0))]
        raise NetBoxError(f"Redis answered {line!r}")


def _wait_for_services(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _pg(), _Redis() as redis:
                redis.call("PING")
            return
        except (OSError, psycopg.Error, NetBoxError) as exc:
            if time.monotonic() > deadline:
                where = f"PostgreSQL on {HOST}:{PG['port']} or Redis on {HOST}:{REDIS_PORT}"
                raise NetBoxError(f"{where} unreachable for {timeout}s: {exc}") from exc
            time.sleep(1)


def _secret(name: str, make: Callable[[], str]) -> str:
    """STATE/<name>, generated once (mode 600) and kept: the template depends on it."""
    path = STATE / name
    if not path.exists():
        fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
        os.replace(f"{path}.tmp", path)
    return path.read_text().strip()


def _random(n: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(n))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(_read(path).splitlines()[-lines:]) or f"({path} is empty)"


def _log(message: str) -> None:
    print(f"[gpuinv-netbox {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


USAGE = "usage: python -m tests.netbox.fixture [up|reset [--sample] | down [--purge] | status]"


def main(argv: list[str] | None = None) -> int:
    """``up``, ``reset``, ``down``, ``status``: exports on stdout, progress on stderr.

    ``up --sample`` (or ``reset --sample``): NetBox emptied, then loaded with a small GPU fleet
    (:mod:`tests.netbox.sample`) for ``gpuinv sync`` to show. Started here, it stays up (this is
    the command line) until ``down``; ``down --purge`` also drops its database.
    """
    command, *options = (sys.argv[1:] if argv is None else argv) or ["up"]
    allowed = {"up": {"--sample"}, "reset": {"--sample"}, "down": {"--purge"}, "status": set()}
    if command not in allowed or not set(options) <= allowed[command]:
        _log(USAGE)
        return 2
    try:
        if command == "down":
            netbox_down(purge="--purge" in options)
            return 0
        if command == "status":
            for name in PROCESSES:
                _log(f"{name}: {'running' if _alive(name) else 'not running'} ({URL})")
            if not netbox_running():
                return 1
            owner = {"tests": "a pytest session", "hand": "hand"}.get(_read(OWNER), "hand")
            _log(f"started by {owner}; pytest processes using it: {len(_users())}")
            netbox = NetBox(URL, _read(STATE / "token"))
        elif "--sample" in options:
            from tests.netbox.sample import describe, load_sample

            # A test that runs this documented command (tests/docs) already holds NetBox,
            # and its session owns it: it says so, and neither waits for itself nor keeps
            # NetBox up after the run.
            held = os.environ.get("GPUINV_NETBOX_HELD_BY_TEST") == "1"
            with contextlib.nullcontext() if held else netbox_in_use():
                netbox = netbox_reset(by_hand=not held)
                _log(describe(load_sample(netbox)))
        else:
            netbox = netbox_up(by_hand=True) if command == "up" else netbox_reset(by_hand=True)
    except NetBoxError as exc:
        _log(f"ERROR: {exc}")
        return 1
    for key, value in netbox.env().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
