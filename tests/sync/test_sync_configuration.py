"""`gpuinv sync` reads its configuration as the service does (``Settings``): the mapping
file is ``--mapping``, else the one GPUINV_SYNC_MAPPING names (which the service's webhook
reads too), refused by name before anything is read or written. No NetBox needed: these
stop before reading it (the mapping from GPUINV_SYNC_MAPPING applied to a real NetBox is in
test_sync_netbox.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from api.cli import main


@pytest.fixture
def run(tmp_path: Path):
    def invoke(*args: str, **env: str | None) -> Result:
        environment: dict[str, str | None] = {
            "GPUINV_DATABASE_URL": f"sqlite:///{tmp_path / 'inventory.db'}",
            "NETBOX_URL": None,
            "NETBOX_TOKEN": None,
            "GPUINV_SYNC_MAPPING": None,
            **env,
        }
        return CliRunner().invoke(main, ["sync", *args], env=environment)

    return invoke


def test_a_bad_mapping_file_from_the_environment_is_refused_by_name(run, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("devices:\n  rolez: [compute]\n")
    refused = run("--diff", GPUINV_SYNC_MAPPING=str(mapping))
    assert refused.exit_code == 2
    assert f"GPUINV_SYNC_MAPPING: {mapping}: devices.rolez: unknown key" in refused.output
    assert not (tmp_path / "inventory.db").exists()  # refused before opening anything


def test_a_missing_mapping_file_from_the_environment_is_refused_by_name(
    run, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.yaml"
    refused = run("--apply", GPUINV_SYNC_MAPPING=str(missing))
    assert refused.exit_code == 2
    assert f"GPUINV_SYNC_MAPPING: {missing}: cannot read it" in refused.output


def test_the_mapping_option_wins_over_the_environment(run, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("devices:\n  roles: [compute]\n")
    result = run("--diff", "--mapping", str(good), GPUINV_SYNC_MAPPING=str(tmp_path / "bad"))
    # the environment's file is not read: the next thing missing is NetBox
    assert result.exit_code == 2 and "GPUINV_SYNC_MAPPING" not in result.output
    assert "set NETBOX_URL and NETBOX_TOKEN" in result.output
