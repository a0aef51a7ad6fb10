"""The examples under iac/examples are what users copy: the HCL one and the CDKTF app
(whose synthesized JSON must say what the HCL says) both apply and destroy with real
Terraform against the real service."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iac.examples.cdktf.main import synth
from tests.conftest import Api
from tests.iac.test_terraform import ACTIVE, _fleet, _terraform, workdir  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[2] / "iac" / "examples"


def _apply_and_destroy(stack: Path, api: Api) -> dict:
    assert _terraform(stack, "init", "-input=false")[0] == 0
    code, out, err = _terraform(stack, "apply", "-auto-approve", "-input=false")
    assert code == 0, out + err
    outputs = json.loads(_terraform(stack, "output", "-json")[1])
    [allocation] = [e["node"] for e in api.ok(ACTIVE)["allocations"]["edges"]]
    assert json.loads(outputs["device_details"]["value"]) == allocation["deviceDetails"]
    assert outputs["hostname"]["value"] == allocation["deviceDetails"]["hostname"]
    code, out, err = _terraform(stack, "destroy", "-auto-approve", "-input=false")
    assert code == 0, out + err
    assert api.ok(ACTIVE)["allocations"]["edges"] == []
    return outputs


@pytest.mark.parametrize("example", ["hcl/main.tf", "json/main.tf.json"])
def test_the_hcl_and_json_examples_apply_and_destroy(
    workdir: Path,  # noqa: F811
    api: Api,
    example: str,
) -> None:
    _fleet(api)
    shutil.copy(EXAMPLES / example, workdir)
    _apply_and_destroy(workdir, api)


def test_the_cdktf_app_synthesizes_what_the_hcl_says_and_applies(
    workdir: Path,  # noqa: F811
    api: Api,
) -> None:
    _fleet(api)
    stack = Path(synth(str(workdir / "cdktf.out")))
    synthesized = json.loads((stack / "cdk.tf.json").read_text())
    assert synthesized["terraform"]["required_providers"]["gpuinv"] == {
        "source": "gpu-inventory/gpuinv"
    }
    assert "gpuinv" in synthesized["provider"]
    [resource] = synthesized["resource"]["gpuinv_allocation"].values()
    arguments = {k: v for k, v in resource.items() if k != "//"}
    # the HCL example's resource, with its variable's default
    assert arguments == {"profile": "h100", "variables": {"gputype": "NVIDIA", "gpu": "8"}}
    assert set(synthesized["output"]) == {"device_details", "hostname"}
    _apply_and_destroy(stack, api)


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
