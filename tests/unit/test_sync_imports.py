"""The CLI mounts the sync's command and hands it the database opener: sync never imports
api.cli (they imported each other, so ``import sync.cli`` alone failed half way)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_no_sync_module_imports_the_cli() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported(path) if m.startswith("api.cli"))
        for path in sorted((ROOT / "sync").glob("*.py"))
    }
    assert {path: modules for path, modules in offenders.items() if modules} == {}


def test_the_sync_command_imports_first_and_is_mounted() -> None:
    script = "import sync.cli, api.cli; print(api.cli.main.commands['sync'].name)"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "sync"), done.stderr
