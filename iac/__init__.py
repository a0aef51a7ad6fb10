"""The IaC bridge: the Terraform provider and the CDKTF constructs."""

# The provider's full source address (DESIGN.md "IaC bridge"); here so that `gpuinv
# terraform install` can name it without loading the provider's gRPC stack.
SOURCE = "registry.terraform.io/gpu-inventory/gpuinv"
