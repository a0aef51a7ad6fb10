"""`gpuinv terraform install`: make `terraform init` find the provider with no registry.

Writes a filesystem mirror (the way Terraform installs providers offline, with a lock
file hash) holding a launcher that runs this Python's `iac.provider`, and a CLI config
pointing at it; prints the `export TF_CLI_CONFIG_FILE=...` line to evaluate.
"""

from __future__ import annotations

import os
import stat
import sys
import zipfile
from pathlib import Path

import click

from api import __version__
from iac import SOURCE

PLATFORM = "linux_amd64"
EXECUTABLE = "terraform-provider-gpuinv"


def default_dir() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "gpuinv" / "terraform"


def install(directory: Path, version: str = __version__) -> Path:
    """Install into ``directory``; returns the CLI config file to use."""
    directory.mkdir(parents=True, exist_ok=True)
    launcher = (
        f"#!/bin/sh\nexec {sys.executable} -c 'from iac.provider import main; main()' \"$@\"\n"
    )
    host, namespace, name = SOURCE.split("/")
    mirror = directory / "mirror"
    package = mirror / host / namespace / name
    package.mkdir(parents=True, exist_ok=True)
    archive = package / f"{EXECUTABLE}_{version}_{PLATFORM}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        entry = zipfile.ZipInfo(f"{EXECUTABLE}_v{version}")
        entry.external_attr = (stat.S_IFREG | 0o755) << 16  # executable once unpacked
        zf.writestr(entry, launcher)
    config = directory / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        f'    include = ["{SOURCE}"]\n'
        "  }\n"
        f'  direct {{ exclude = ["{SOURCE}"] }}\n'
        "}\n"
    )
    return config


@click.group("terraform")
def terraform_command() -> None:
    """The Terraform provider gpu-inventory/gpuinv."""


@terraform_command.command("install")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where to install (default: {default_dir()}).",
)
def install_command(directory: Path | None) -> None:
    """Install the provider for offline use and print the line to evaluate:

    eval "$(gpuinv terraform install)"   # then: terraform init
    """
    config = install(directory or default_dir())
    click.echo(f"export TF_CLI_CONFIG_FILE={config}")
