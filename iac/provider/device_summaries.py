"""The `devices` attribute that gpuinv_allocation and gpuinv_devices both compute.

One summary object per device document (id, hostname, status, site, totalgpus, gpu_model),
typed, so HCL reads `devices[0].hostname` without a jsondecode; both types build it from
the API's documents with the same code, so the two lists always look alike.
"""

from __future__ import annotations

from typing import Any

from tf import schema, types
from tf.types import Unknown


class Object(types.TfType):
    """Terraform's object type, which the `tf` framework lacks: named attributes, each of
    its own type, all present (null when unknown). `devices` is a list of these, so
    `totalgpus` is a number in HCL, as DESIGN.md fixes it."""

    def __init__(self, attributes: dict[str, types.TfType]):
        self.attributes = attributes

    def encode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return {name: kind.encode(value.get(name)) for name, kind in self.attributes.items()}

    def decode(self, value: Any) -> Any:
        if value is None or value is Unknown:
            return value
        return {name: kind.decode(value.get(name)) for name, kind in self.attributes.items()}

    def tf_type(self) -> bytes:
        fields = ",".join(
            f'"{name}":{kind.tf_type().decode()}' for name, kind in self.attributes.items()
        )
        return f'["object",{{{fields}}}]'.encode()


DEVICE = Object(
    {
        "id": types.String(),
        "hostname": types.String(),
        "status": types.String(),
        "site": types.String(),
        "totalgpus": types.Number(),
        "gpu_model": types.String(),
    }
)


def devices_attribute() -> schema.Attribute:
    return schema.Attribute(
        "devices",
        types.List(DEVICE),
        computed=True,
        description="Each device: id, hostname, status, site, totalgpus, gpu_model.",
    )


def device_summaries(details: Any) -> list[dict[str, Any]]:
    """The summary of each device document (the full documents are device_details)."""
    documents = details if isinstance(details, list) else [details] if details else []
    found = []
    for document in documents:
        gpus = document.get("gpus") or []
        found.append(
            {
                "id": document.get("id"),
                "hostname": document.get("hostname"),
                "status": document.get("status"),
                "site": document.get("site"),
                "totalgpus": document.get("totalgpus"),
                "gpu_model": gpus[0].get("modelNo") if gpus else None,
            }
        )
    return found
