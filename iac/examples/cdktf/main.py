"""The HCL example (iac/examples/hcl/main.tf) as a CDKTF app.

python iac/examples/cdktf/main.py     # writes cdktf.out/stacks/gpu-env/cdk.tf.json
cd cdktf.out/stacks/gpu-env && terraform init && terraform apply
"""

from __future__ import annotations

import os

from constructs import Construct

from iac.cdk import GpuEnvironment, GpuinvProvider, cdktf  # cdktf, or cdktn in its place


class GpuEnvironmentStack(cdktf.TerraformStack):
    def __init__(self, scope: Construct, id: str, profile: str = "h100") -> None:
        super().__init__(scope, id)
        # State beside the synthesized stack (CDKTF's default is an absolute path in the
        # directory its Node.js runtime started in).
        cdktf.LocalBackend(self, path="terraform.tfstate")
        GpuinvProvider(self, "gpuinv")
        environment = GpuEnvironment(
            self, "env", profile=profile, variables={"gputype": "H100", "gpu": "8"}
        )
        cdktf.TerraformOutput(self, "device_details", value=environment.device_details)
        cdktf.TerraformOutput(
            self,
            "hostname",
            value=cdktf.Fn.lookup(cdktf.Fn.jsondecode(environment.device_details), "hostname"),
        )


def synth(outdir: str = "cdktf.out") -> str:
    """Synthesize; returns the stack's directory (holding cdk.tf.json)."""
    app = cdktf.App(outdir=outdir)
    GpuEnvironmentStack(app, "gpu-env", profile=os.environ.get("GPU_PROFILE", "h100"))
    app.synth()
    return os.path.join(outdir, "stacks", "gpu-env")


if __name__ == "__main__":
    print(synth())
