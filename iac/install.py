"""`gpuinv terraform install`: make `terraform init` find the provider with no registry.

Writes a filesystem mirror (the way Terraform installs providers offline, with a lock
file hash) holding a launcher that runs this Python's `iac.provider`, and a CLI config
pointing at it; prints the `export TF_CLI_CONFIG_FILE=...` line to evaluate.
"""

from __future__ import annotations

import os
import shlex
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


def launcher() -> str:
    """The provider executable: this Python (the one holding the project) running
    iac.provider, so the provider is always the installed project's own code."""
    python = shlex.quote(sys.executable)
    return f"#!/bin/sh\nexec {python} -c 'from iac.provider import main; main()' \"$@\"\n"


def install(directory: Path, version: str = __version__) -> Path:
    """A filesystem mirror in ``directory``; returns the CLI config file to use.

    What users get: `terraform init` installs the provider from the mirror as it would
    from a registry, and writes the lock file (with a locally calculated hash)."""
    directory.mkdir(parents=True, exist_ok=True)
    host, namespace, name = SOURCE.split("/")
    mirror = directory / "mirror"
    package = mirror / host / namespace / name
    package.mkdir(parents=True, exist_ok=True)
    archive = package / f"{EXECUTABLE}_{version}_{PLATFORM}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        entry = zipfile.ZipInfo(f"{EXECUTABLE}_v{version}")
        entry.external_attr = (stat.S_IFREG | 0o755) << 16  # executable once unpacked
        zf.writestr(entry, launcher())
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


def install_dev_overrides(directory: Path) -> Path:
    """The provider as a plain executable and a CLI config whose `dev_overrides` points
    Terraform at it; returns that config.

    For working on the provider: Terraform runs the executable in place, so a change to
    iac/ shows at the next plan with no re-install. `terraform init` is not needed (it
    warns that overrides are in effect) and no lock file is written."""
    bin_dir = directory / "dev-overrides"
    bin_dir.mkdir(parents=True, exist_ok=True)
    executable = bin_dir / EXECUTABLE
    executable.write_text(launcher())
    executable.chmod(0o755)
    config = directory / "terraformrc-dev"
    config.write_text(
        "provider_installation {\n"
        f'  dev_overrides {{ "{SOURCE}" = "{bin_dir}" }}\n'
        "  direct {}\n"
        "}\n"
    )
    return config


@click.group("terraform")
def terraform_command() -> None:
    """The Terraform provider gpu-inventory/gpuinv."""


@terraform_command.command("install")
@click.option(
    "--dev-overrides",
    is_flag=True,
    help="Point Terraform at the provider in place (for working on iac/): no init, no lock file.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help=f"Where to install (default: {default_dir()}).",
)
def install_command(dev_overrides: bool, directory: Path | None) -> None:
    """Install the provider for offline use (no registry) and print the line to evaluate:

    \b
    eval "$(gpuinv terraform install)"
    terraform init     # installs gpu-inventory/gpuinv from a local mirror, writes the lock

    The provider is a launcher for this installation's Python: re-run after moving or
    re-creating its virtual environment.
    """
    where = directory or default_dir()
    config = install_dev_overrides(where) if dev_overrides else install(where)
    click.echo(f"export TF_CLI_CONFIG_FILE={shlex.quote(str(config))}")
