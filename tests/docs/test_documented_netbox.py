"""The documented NetBox examples (README.md's sync section, sync/README.md) run as written
against the tests' real NetBox 4.7.3: the sample fleet command, the sync, the mapping file.

The test holds NetBox (``clean_netbox``) while the reader's shell runs, so the documented
``fixture up --sample`` is told so (``GPUINV_NETBOX_HELD_BY_TEST``): it then neither waits
for this test's hold nor keeps NetBox up after the run, as it would for a person.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.netbox.fixture import NetBox
from tests.netbox.sample import load_sample
from tests.support.demo import BIN
from tests.support.examples import REPOSITORY, examples
from tests.support.reader import Reader

pytestmark = pytest.mark.xdist_group("netbox")


def _reader(netbox: NetBox, home: Path) -> Reader:
    env = {
        "PATH": os.pathsep.join([str(BIN), "/usr/bin", "/bin"]),
        "HOME": os.environ["HOME"],  # where the fixture keeps its NetBox (~/.cache)
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(REPOSITORY),
        "GPUINV_DATABASE_URL": f"sqlite:///{home / 'inventory.db'}",
        "GPUINV_NETBOX_HELD_BY_TEST": "1",
        **netbox.env(),
    }
    return Reader(None, env, home)


def _netbox_blocks(document: str):
    return [b for b in examples(document) if b.kind in ("file", "netbox")]


def test_the_readme_sample_netbox_and_sync_commands_run_as_written(
    clean_netbox: NetBox, tmp_path: Path
) -> None:
    blocks = _netbox_blocks("README.md")
    assert any(".fixture up --sample" in b.code for b in blocks)
    _reader(clean_netbox, tmp_path).follow(blocks)
    assert (tmp_path / "sample.db").exists()  # the block's own database, as it says


def test_the_mapping_page_examples_run_against_the_sample_fleet(
    clean_netbox: NetBox, tmp_path: Path
) -> None:
    load_sample(clean_netbox)
    blocks = _netbox_blocks("sync/README.md")
    assert any(b.argument == "mapping.yaml" for b in blocks)
    _reader(clean_netbox, tmp_path).follow(blocks)
