"""The matchmaking benchmark's report: the machine, the code, what else ran, the parts'
sections and the problems.

A long run shares the machine with other people's tests and benchmarks, and the code may
change under it; ``look_around`` notes both before each measurement, so the report says
which figures to doubt.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
from pathlib import Path

import psycopg

from api import __version__
from bench.report import PROBLEMS, machine_line, problem, progress
from bench.service import code_version, one_value

LOAD_AT_START = os.getloadavg()[0]
SEEN_RUNNING: dict[str, str] = {}  # other benchmarks / test runs seen: command -> when
CODE_SEEN: dict[str, str] = {}  # code version -> when first seen


def other_load() -> list[str]:
    """Other benchmarks (``bench.*``) and test runs (``pytest``) on the machine now."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if ("bench." in command and "bench.matching" not in command) or "pytest" in command:
            found.append(f"pid {entry.name}: {command[:100]}")
    return found


def look_around(where: str) -> None:
    """Note, before each measurement, what else runs and which code the service runs: both
    may change while a long run goes on, and the report should say so."""
    for command in other_load():
        if command not in SEEN_RUNNING:
            SEEN_RUNNING[command] = where
            progress(f"also running ({where}): {command}; figures will be skewed")
    version = code_version()
    if version not in CODE_SEEN:
        if CODE_SEEN:
            problem(f"the code changed during the run: {version} from {where} on")
        CODE_SEEN[version] = where


def machine_description(args: argparse.Namespace) -> list[str]:
    lines = [
        machine_line(),
        f"Code: gpu-inventory {__version__}, commit "
        + ", then ".join(f"{v} ({where})" for v, where in CODE_SEEN.items())
        + "; client, server and database on the same machine",
    ]
    if {"http", "throughput"} & set(args.parts):
        if "sqlite" in args.backends and "http" in args.parts:
            lines.append(f"SQLite {sqlite3.sqlite_version}, a temp file per run")
        with psycopg.connect(args.postgres_url) as connection:
            version = one_value(connection, "SHOW server_version")
        lines.append(f"PostgreSQL {version} on 127.0.0.1, a fresh database (benchm_*) per run")
    lines.append(
        f"Load average (1 min) at start {LOAD_AT_START:.2f}, at end {os.getloadavg()[0]:.2f}; "
        + (
            "also running on the machine (seen before a measurement): "
            + "; ".join(f"{c} ({where})" for c, where in SEEN_RUNNING.items())
            if SEEN_RUNNING
            else "no other benchmark or test run was seen before any measurement"
        )
    )
    return lines


def report(sections: list[list[str]], args: argparse.Namespace) -> str:
    look_around("end")
    out = ["", "gpu-inventory matchmaking benchmark (bench/matching/)"]
    out += machine_description(args)
    for section in sections:
        out += ["", *section]
    if PROBLEMS:
        out += ["", "Problems:", *(f"  - {p}" for p in PROBLEMS)]
    return "\n".join(out)
