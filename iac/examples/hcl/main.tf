# An environment's GPU servers from the inventory. Run:
#   eval "$(gpuinv terraform install)"
#   export GPUINV_ENDPOINT=http://127.0.0.1:8000 GPUINV_TOKEN=...
#   terraform init && terraform apply
terraform {
  required_providers { gpuinv = { source = "gpu-inventory/gpuinv" } }
}

provider "gpuinv" {}

variable "gpu_profile" {
  type    = string
  default = "h100"
}

resource "gpuinv_allocation" "env" {
  profile   = var.gpu_profile
  variables = { gputype = "H100", gpu = "8" }
}

output "device_details" { value = gpuinv_allocation.env.device_details }
output "hostname" { value = jsondecode(gpuinv_allocation.env.device_details).hostname }
