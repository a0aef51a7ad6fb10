"""The Terraform tests' working directory: the provider installed from its offline mirror,
and the endpoint and a platform-admin token of the test server in the environment, where
the provider block (`provider "gpuinv" {}`) finds them."""

from __future__ import annotations

from pathlib import Path

import pytest

from iac.install import install
from tests.support.api import Api


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: Api) -> Path:
    config = install(tmp_path / "provider")
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(config))
    monkeypatch.setenv("GPUINV_ENDPOINT", api.url)
    monkeypatch.setenv("GPUINV_TOKEN", api.token or "")
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    directory = tmp_path / "stack"
    directory.mkdir()
    return directory
