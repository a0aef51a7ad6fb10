"""The seed's own label JSON (``paas.envmgmt.io/inventory.config``), for the matching
engine's unit tests and the API's match against the demo fleet."""

# Copied verbatim from seeds/001_43cf31f420583302.txt ("Example Label for Match and Capacity
# Filters" and the capacityMap example).
SEED_CONFIG = """[
  {
    "type": "match",
    "keyInVariable": "gputype",
    "keyInDevice": "gpus.vendorCode"
  },
  {
    "type": "match",
    "keyInVariable": "location",
    "keyInDevice": "tags"
  },
  {
    "type": "match",
    "keyInVariable": "input2",
    "keyInDevice": "gpus.modelNo"
  },
  {
    "type": "match",
    "keyInVariable": "input3",
    "keyInDevice": "model"
  },
  {
    "type": "match",
    "keyInVariable": "zone",
    "keyInDevice": "tags.location"
  },
  {
    "type": "capacity",
    "keyInVariable": "noofNodes",
    "keyInCapacity": "requiredNoofNodes"
  },
  {
    "type": "capacity",
    "keyInVariable": "cpu",
    "keyInCapacity": "requiredCPU"
  },
  {
    "type": "capacity",
    "keyInVariable": "memoryMB",
    "keyInCapacity": "requiredMemoryMB"
  },
  {
    "type": "capacity",
    "keyInVariable": "gpu",
    "keyInCapacity": "requiredGPU"
  },
  {
    "type": "capacity",
    "keyInVariable": "storageGB",
    "keyInCapacity": "requiredStorageGB"
  }
]"""

SEED_CAPACITY_MAP = """{
  "type": "capacity",
  "keyInVariable": "Namespace Quota Size",
  "keyInCapacity": "capacitySize",
  "capacityMap": {
    "small": {
      "requiredCpu": 3,
      "requiredMemoryMB": 3000,
      "requiredStorageGB": 2,
      "requiredGPU": 1
    },
    "medium": {
      "requiredCpu": 3,
      "requiredMemoryMB": 4000,
      "requiredStorageGB": 2,
      "requiredGPU": 2
    },
    "large": {
      "requiredCpu": 3,
      "requiredMemoryMB": 5000,
      "requiredStorageGB": 4,
      "requiredGPU": 3
    }
  }
}"""
