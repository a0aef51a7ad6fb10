"""`gpuinv terraform install`: make `terraform init` find the provider with no registry.

Writes a filesystem mirror (the way Terraform installs providers offline, with a lock
file hash) holding a launcher for `iac.provider`, the path of this Python beside it, and a
CLI config pointing at the mirror; prints the `export TF_CLI_CONFIG_FILE=...` line to
evaluate.

The package a lock file pins must stay the same for a version, whoever installs it: the
zip holds no path and no time (the launcher finds its Python at run time, in the
``python-path`` file), so reinstalling from another checkout or venv keeps every
`.terraform.lock.hcl` valid.
"""

from __future__ import annotations

import io
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
PYTHON_RECORD = "python-path"  # beside the CLI config: the Python the provider runs with
REINSTALL = 'run: eval "$(gpuinv terraform install)"'
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: no install time in the package

# REINSTALL for Python source inside a shell's single quotes: no quote characters.
_PY_REINSTALL = REINSTALL.replace('"', "\\x22")
# What the launcher's Python runs. -P (not -c's usual cwd first on sys.path): a directory
# named `iac` in the Terraform working directory must not shadow the provider. The line
# goes to stdout too: go-plugin reads stdout for its handshake, so Terraform quotes it in
# its "Unrecognized remote plugin message" error, where stderr is only in TF_LOG.
_RUN_PROVIDER = f"""
import sys
try:
    from iac.provider import main
except ImportError as error:
    line = f"{EXECUTABLE}: {{sys.executable}} cannot load the provider ({{error}}); {_PY_REINSTALL}"
    print(line, file=sys.stderr)
    print(line)
    sys.exit(1)
main()
"""

# The packaged launcher: no path in it. GPUINV_PYTHON, if set, wins; else the Python
# recorded beside the CLI config Terraform was given (TF_CLI_CONFIG_FILE, which the
# provider process inherits), else the one in the default install directory.
_FIND_PYTHON = f"""\
#!/bin/sh
# {EXECUTABLE}: the gpu-inventory provider, run with the Python that
# `gpuinv terraform install` recorded in {PYTHON_RECORD} beside its CLI configuration.
fail() {{
  line="{EXECUTABLE}: $1; {REINSTALL.replace('"', '\\"').replace("$", "\\$")}"
  printf '%s\\n' "$line" >&2
  printf '%s\\n' "$line"
  exit 1
}}
if [ -n "${{GPUINV_PYTHON:-}}" ]; then
  python=$GPUINV_PYTHON
  [ -x "$python" ] || fail "GPUINV_PYTHON=$python is not an executable"
else
  case ${{TF_CLI_CONFIG_FILE:-}} in
    */*) configured=${{TF_CLI_CONFIG_FILE%/*}} ;;
    ?*) configured=. ;;
    *) configured= ;;
  esac
  default=${{XDG_DATA_HOME:-${{HOME:-}}/.local/share}}/gpuinv/terraform
  [ "$configured" = "$default" ] && configured=
  python= tried=
  for dir in ${{configured:+"$configured"}} "$default"; do
    record=$dir/{PYTHON_RECORD}
    if [ ! -r "$record" ]; then
      tried="$tried${{tried:+; }}$record is missing"
      continue
    fi
    candidate=
    IFS= read -r candidate <"$record" || [ -n "$candidate" ]
    if [ -x "$candidate" ]; then
      python=$candidate
      break
    fi
    tried="$tried${{tried:+; }}$candidate is gone (recorded in $record)"
  done
  [ -n "$python" ] || fail "no Python to run the provider ($tried)"
fi
exec "$python" -P -c '{_RUN_PROVIDER}' "$@"
"""


def default_dir() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "gpuinv" / "terraform"


def launcher(python: str | None = None) -> str:
    """The provider executable, running iac.provider so the provider is always the
    installed project's own code. With ``python``, that Python, written in (for
    `--dev-overrides`, whose executable no lock file hashes); without, the Python that
    the install recorded, found at run time (for the package a lock file pins)."""
    if python is None:
        return _FIND_PYTHON
    return f"#!/bin/sh\nexec {shlex.quote(python)} -P -c '{_RUN_PROVIDER}' \"$@\"\n"


def package(version: str) -> bytes:
    """The provider's zip for ``version``: the same bytes from any install (no path, no
    time, fixed mode), so the hash in a lock file stays valid across reinstalls."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        entry = zipfile.ZipInfo(f"{EXECUTABLE}_v{version}", date_time=ZIP_TIME)
        entry.create_system = 3  # Unix, so the mode below is honoured when unpacked
        entry.external_attr = (stat.S_IFREG | 0o755) << 16  # executable once unpacked
        entry.compress_type = zipfile.ZIP_STORED
        zf.writestr(entry, launcher())
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> None:
    """Replace ``path`` whole (a `terraform init` reading it never sees half a file), and
    leave it alone when it already holds ``data``."""
    if path.is_file() and path.read_bytes() == data:
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_bytes(data)
    partial.replace(path)


def _python(python: str) -> str:
    if not python or "\n" in python:
        raise click.ClickException(f"cannot record this Python's path for the provider: {python!r}")
    return os.path.abspath(python)  # not resolved: a venv's python is a symlink out of it


def install(directory: Path, version: str = __version__, python: str = sys.executable) -> Path:
    """A filesystem mirror in ``directory``; returns the CLI config file to use.

    What users get: `terraform init` installs the provider from the mirror as it would
    from a registry, and writes the lock file (with a locally calculated hash). Other
    versions' zips already in the mirror stay, so a lock file pinning one keeps working;
    the recorded Python (``python``) is the one every version's launcher runs."""
    directory = directory.absolute()
    directory.mkdir(parents=True, exist_ok=True)
    host, namespace, name = SOURCE.split("/")
    mirror = directory / "mirror"
    target = mirror / host / namespace / name
    target.mkdir(parents=True, exist_ok=True)
    _write(target / f"{EXECUTABLE}_{version}_{PLATFORM}.zip", package(version))
    _write(directory / PYTHON_RECORD, f"{_python(python)}\n".encode())
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


def install_dev_overrides(directory: Path, python: str = sys.executable) -> Path:
    """The provider as a plain executable and a CLI config whose `dev_overrides` points
    Terraform at it; returns that config.

    For working on the provider: Terraform runs the executable in place, so a change to
    iac/ shows at the next plan with no re-install. `terraform init` is not needed (it
    warns that overrides are in effect) and no lock file is written, so the executable
    names ``python`` itself."""
    directory = directory.absolute()
    bin_dir = directory / "dev-overrides"
    bin_dir.mkdir(parents=True, exist_ok=True)
    executable = bin_dir / EXECUTABLE
    executable.write_text(launcher(_python(python)))
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

    Writes a filesystem mirror holding this version's provider package, a CLI
    configuration (terraformrc) using it, and python-path: this Python, which the provider
    runs with (GPUINV_PYTHON overrides it).

    The package is the same for every install of a version, so reinstalling (from another
    checkout or virtual environment) keeps lock files valid. Install again after moving or
    re-creating the virtual environment. Packages of other versions stay in the mirror;
    `terraform init -upgrade` moves a lock file to the newest.
    """
    where = directory or default_dir()
    config = install_dev_overrides(where) if dev_overrides else install(where)
    click.echo(f"export TF_CLI_CONFIG_FILE={shlex.quote(str(config))}")
