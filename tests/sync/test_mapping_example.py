"""sync/mapping.example.yaml and sync/README.md document the mapping file: the example names
every key with its default (loaded through the real loader, it is the default mapping), the
page's table lists the same keys and defaults, and `gpuinv sync --mapping` takes the example.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from api.cli import main
from sync.mapping import _SECTIONS, Mapping, parse_mapping
from tests.netbox.fixture import NetBox
from tests.netbox.sample import Fleet
from tests.support.sync import run_sync

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "sync" / "mapping.example.yaml"
PAGE = ROOT / "sync" / "README.md"
# What a clone does not hold: the design notes and seed documents, the shared directory.
OUTSIDE = re.compile(r"DESIGN\.md|\bseeds?\b(?! \()|seed 00\d|\.\./shared", re.I)
LINK = re.compile(r"\]\((?!https?://|#)([^)#\s]+)")


def _documented_keys() -> dict[str, object]:
    """`section.key` -> its default, for every key the loader knows."""
    defaults = Mapping()
    return {
        f"{section}.{key}": getattr(defaults, attribute)
        for section, keys in _SECTIONS.items()
        for key, attribute in keys.items()
    }


def test_the_example_loads_to_exactly_the_default_mapping() -> None:
    assert parse_mapping(EXAMPLE.read_text(), str(EXAMPLE)) == Mapping()


def test_the_example_names_every_key_the_loader_knows() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    named = {f"{section}.{key}" for section, body in raw.items() for key in body}
    assert named == set(_documented_keys())
    # and every attribute of the mapping is reachable from some key
    assert {a for keys in _SECTIONS.values() for a in keys.values()} == {
        f.name for f in fields(Mapping)
    }


def test_the_example_comments_every_key() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for n, line in enumerate(lines):
        if re.match(r"^\s+\w+:", line):  # a key inside a section
            assert lines[n - 1].strip().startswith("#"), f"no comment above {line.strip()!r}"


@pytest.mark.parametrize("key", sorted(_documented_keys()))
def test_the_page_lists_each_key_with_its_default(key: str) -> None:
    default = _documented_keys()[key]
    shown = f"[{', '.join(default)}]" if isinstance(default, tuple) else default
    rows = [line for line in PAGE.read_text().splitlines() if line.startswith(f"| `{key}` |")]
    assert rows, f"{key} is not in {PAGE.name}'s table"
    assert f"| `{shown}` |" in rows[0], f"{key}: {rows[0]!r} does not show {shown!r}"


def test_the_sync_help_points_at_the_page_inside_the_repository() -> None:
    result = CliRunner().invoke(main, ["sync", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    assert "sync/README.md" in help_text and "sync/mapping.example.yaml" in help_text
    assert not OUTSIDE.findall(help_text)
    for path in re.findall(r"\b[\w/.-]+\.(?:md|yaml)\b", help_text):
        assert (ROOT / path).is_file(), f"the help names {path}, which the repository lacks"


@pytest.mark.parametrize("document", [PAGE, EXAMPLE], ids=lambda p: p.name)
def test_the_page_and_the_example_point_at_nothing_outside_the_repository(
    document: Path,
) -> None:
    text = document.read_text()
    assert not OUTSIDE.findall(text)
    for target in LINK.findall(text):
        assert (document.parent / target).exists(), target


@pytest.mark.xdist_group("netbox")
def test_gpuinv_sync_takes_the_example_and_plans_as_with_no_file(
    clean_netbox: NetBox, tmp_path: Path
) -> None:
    Fleet.build(clean_netbox.api(), servers=1)
    database_url = f"sqlite:///{tmp_path / 'inventory.db'}"

    def planned(*args: str) -> list[dict]:
        result = run_sync(clean_netbox, database_url, "--diff", "--json", *args)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    with_example = planned("--mapping", str(EXAMPLE))
    assert {(c["action"], c["key"]) for c in with_example} == {
        ("create", "gpu-001"),
        ("create", "ib-leaf-1"),
        ("create", "vm-01"),
    }
    assert with_example == planned()
