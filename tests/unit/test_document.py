"""Item documents: parse_device / parse_switch / parse_infiniband validate untrusted input.

Every bad field must be reported, named as the document spells it (``gpus[1].vendorCode``),
and what parses must carry the document's facts, normalised (trimmed, vendors upper-cased,
tag numbers as strings). An exported document (with its read-only fields) must re-parse.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.domain.document import (
    DeviceSpec,
    DocumentError,
    Gpu,
    IbPort,
    InfinibandSpec,
    Source,
    SwitchSpec,
    facts_with,
    infiniband_name,
    parse_device,
    parse_infiniband,
    parse_switch,
    port_facts_with,
    switch_facts_with,
)
from api.domain.fields import MAX_AMOUNT, MAX_COUNT, MAX_NAME
from api.domain.vocabulary import Kind, SourceSystem, Status

# The example device document of DESIGN.md, complete.
DGX: dict[str, Any] = {
    "hostname": "server-42",
    "kind": "baremetal",
    "status": "available",
    "manufacturer": "NVIDIA",
    "model": "DGX H100",
    "serial": "SN-0042",
    "totalcpu": 224,
    "totalmemoryMB": 2097152,
    "totalstorageGB": 30720,
    "totalgpus": 2,
    "gpus": [
        {"index": 0, "vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB", "memoryMB": 81920},
        {"index": 1, "vendorCode": "NVIDIA", "modelNo": "H100-SXM5-80GB", "memoryMB": 81920},
    ],
    "tags": {"gputype": "H100", "location": "india"},
    "site": "blr-1",
    "location": "hall-2",
    "rack": "r12",
    "infiniband": [{"name": "ib0", "rateGbps": 400, "fabric": "fabric-a", "switch": "ib-leaf-3"}],
    "tenant": "acme",
    "project": "llm",
    "source": {
        "system": "netbox",
        "id": 123,
        "url": "https://netbox.example/api/dcim/devices/123/",
    },
}


def device_errors(raw: Any, kind: Kind = Kind.BAREMETAL) -> list[tuple[str, str]]:
    """(field, message) of every error parse_device reports; fails if it parses."""
    with pytest.raises(DocumentError) as caught:
        parse_device(raw, kind)
    return [(e.field, e.message) for e in caught.value.errors]


def device_fields(raw: Any, kind: Kind = Kind.BAREMETAL) -> list[str]:
    return [field for field, _ in device_errors(raw, kind)]


def switch_fields(raw: Any) -> list[str]:
    with pytest.raises(DocumentError) as caught:
        parse_switch(raw)
    return [e.field for e in caught.value.errors]


def infiniband_errors(raw: Any) -> list[tuple[str, str]]:
    with pytest.raises(DocumentError) as caught:
        parse_infiniband(raw)
    return [(e.field, e.message) for e in caught.value.errors]


def with_(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**base, **changes}


def exported(spec: DeviceSpec) -> dict[str, Any]:
    """The document the service renders for a stored device: every key, nulls included,
    plus the output-only fields a client gets back (and may send back unchanged)."""
    document = {
        "id": "5b0e9a4c-2a53-4b4e-9a59-1f2f6f1d3c11",
        "createdAt": "2025-01-02T03:04:05Z",
        "updatedAt": "2025-01-02T03:04:06Z",
        "generation": 4,
        "free": {"cpu": 0, "memoryMB": 0, "storageGB": 0, "gpus": 0},
        "attention": [],
        "hostname": spec.hostname,
        "kind": spec.kind.value,
        "status": (spec.status or Status.AVAILABLE).value,
        "manufacturer": spec.facts["manufacturer"],
        "model": spec.facts["model"],
        "serial": spec.facts["serial"],
        "totalcpu": spec.facts["total_cpu"],
        "totalmemoryMB": spec.facts["total_memory_mb"],
        "totalstorageGB": spec.facts["total_storage_gb"],
        "totalgpus": spec.facts["total_gpus"],
        "gpus": [gpu.document() for gpu in spec.gpus],
        "tags": dict(spec.tags),
        "site": spec.facts["site"],
        "location": spec.facts["location"],
        "rack": spec.facts["rack"],
        "infiniband": [p.document() for p in spec.infiniband or ()],
        "tenant": spec.tenant,
        "project": spec.project,
        "source": spec.source.document(),
    }
    if spec.kind == Kind.VM:
        document["cluster"] = spec.facts["cluster"]
        document["host"] = spec.facts["host"]
    return document


# --- parse_device: what parses, and how it is normalised -------------------------------------


def test_parses_the_design_example_into_every_fact() -> None:
    spec = parse_device(DGX)
    assert spec == DeviceSpec(
        kind=Kind.BAREMETAL,
        hostname="server-42",
        status=Status.AVAILABLE,
        facts=facts_with(
            manufacturer="NVIDIA",
            model="DGX H100",
            serial="SN-0042",
            total_cpu=224,
            total_memory_mb=2097152,
            total_storage_gb=30720,
            total_gpus=2,
            site="blr-1",
            location="hall-2",
            rack="r12",
        ),
        gpus=(
            Gpu(0, "NVIDIA", "H100-SXM5-80GB", 81920),
            Gpu(1, "NVIDIA", "H100-SXM5-80GB", 81920),
        ),
        tags={"gputype": "H100", "location": "india"},
        infiniband=(
            IbPort("ib0", port_facts_with(rate_gbps=400, fabric="fabric-a", switch="ib-leaf-3")),
        ),
        tenant="acme",
        project="llm",
        source=Source(SourceSystem.NETBOX, 123, "https://netbox.example/api/dcim/devices/123/"),
    )


def test_a_hostname_alone_is_a_device_with_zero_capacity_and_unset_operational_state() -> None:
    spec = parse_device({"hostname": "bare"})
    assert spec.hostname == "bare"
    assert spec.kind == Kind.BAREMETAL
    assert (
        spec.facts["total_cpu"],
        spec.facts["total_memory_mb"],
        spec.facts["total_storage_gb"],
        spec.facts["total_gpus"],
    ) == (
        0,
        0,
        0,
        0,
    )
    assert spec.gpus == ()
    assert spec.tags == {}
    # None (not "available", not ()) so that an upsert leaves the stored value alone.
    assert spec.status is None
    assert spec.infiniband is None
    assert spec.tenant is None and spec.project is None
    assert spec.source == Source(SourceSystem.MANUAL, None, None)


def test_nulls_mean_absent() -> None:
    spec = parse_device(
        {
            "hostname": "n1",
            "status": None,
            "manufacturer": None,
            "totalcpu": None,
            "gpus": None,
            "tags": None,
            "infiniband": None,
            "source": None,
        }
    )
    assert spec.status is None and spec.facts["manufacturer"] is None
    assert spec.facts["total_cpu"] == 0 and spec.gpus == () and spec.tags == {}
    assert spec.infiniband is None and spec.source == Source()


def test_upper_cases_and_trims_gpu_vendor_codes_and_keeps_unknown_vendors() -> None:
    spec = parse_device(
        {
            "hostname": "mixed",
            "gpus": [
                {"vendorCode": " nvidia ", "modelNo": "H100"},
                {"vendorCode": "Amd", "modelNo": "MI300X"},
                {"vendorCode": "intel", "modelNo": "Max 1550"},
                {"vendorCode": "habana", "modelNo": "Gaudi3"},
            ],
        }
    )
    assert [gpu.vendor_code for gpu in spec.gpus] == ["NVIDIA", "AMD", "INTEL", "HABANA"]


def test_trims_every_string_field() -> None:
    spec = parse_device(
        {
            "hostname": "  server-1 ",
            "manufacturer": " Supermicro ",
            "model": " SYS-821GE ",
            "serial": " S1 ",
            "site": " blr-1 ",
            "location": " hall-2 ",
            "rack": " r1 ",
            "tenant": " acme ",
            "project": " llm ",
            "gpus": [{"vendorCode": "NVIDIA", "modelNo": "  H100  "}],
            "tags": {" location ": "  india  "},
        }
    )
    assert spec.hostname == "server-1"
    assert (spec.facts["manufacturer"], spec.facts["model"], spec.facts["serial"]) == (
        "Supermicro",
        "SYS-821GE",
        "S1",
    )
    assert (spec.facts["site"], spec.facts["location"], spec.facts["rack"]) == (
        "blr-1",
        "hall-2",
        "r1",
    )
    assert (spec.tenant, spec.project) == ("acme", "llm")
    assert spec.gpus[0].model_no == "H100"
    assert spec.tags == {"location": "india"}


def test_stringifies_numeric_tag_values() -> None:
    spec = parse_device(
        {"hostname": "t", "tags": {"rackUnit": 42, "ratio": 1.5, "whole": 8.0, "zero": 0}}
    )
    assert spec.tags == {"rackUnit": "42", "ratio": "1.5", "whole": "8", "zero": "0"}


def test_status_is_case_insensitive_and_trimmed() -> None:
    assert parse_device({"hostname": "s", "status": " Maintenance "}).status == Status.MAINTENANCE
    assert parse_device({"hostname": "s", "status": "RESERVED"}).status == Status.RESERVED


@pytest.mark.parametrize("status", ["available", "reserved", "maintenance", "offline", "retired"])
def test_accepts_every_status_but_allocated(status: str) -> None:
    assert parse_device({"hostname": "s", "status": status}).status == Status(status)


def test_whole_floats_count_as_whole_numbers() -> None:
    spec = parse_device({"hostname": "f", "totalcpu": 224.0, "totalmemoryMB": 1e6})
    assert (spec.facts["total_cpu"], spec.facts["total_memory_mb"]) == (224, 1_000_000)
    assert isinstance(spec.facts["total_cpu"], int)


def test_a_numeric_hostname_is_taken_as_text() -> None:
    assert parse_device({"hostname": 42}).hostname == "42"


def test_accepts_the_largest_allowed_amounts() -> None:
    spec = parse_device(
        {
            "hostname": "big",
            "totalcpu": MAX_COUNT,
            "totalmemoryMB": MAX_AMOUNT,
            "totalstorageGB": MAX_AMOUNT,
        }
    )
    assert (
        spec.facts["total_cpu"],
        spec.facts["total_memory_mb"],
        spec.facts["total_storage_gb"],
    ) == (
        MAX_COUNT,
        MAX_AMOUNT,
        MAX_AMOUNT,
    )


def test_accepts_a_hostname_of_exactly_the_maximum_length() -> None:
    assert parse_device({"hostname": "h" * MAX_NAME}).hostname == "h" * MAX_NAME


def test_kind_may_repeat_the_section_in_any_case() -> None:
    assert parse_device({"hostname": "k", "kind": " BAREMETAL "}).kind == Kind.BAREMETAL
    assert parse_device({"hostname": "k", "kind": "vm"}, Kind.VM).kind == Kind.VM


def test_the_kind_comes_from_the_caller_not_the_document() -> None:
    assert parse_device({"hostname": "v"}, Kind.VM).kind == Kind.VM


def test_vms_carry_cluster_and_host() -> None:
    spec = parse_device({"hostname": "vm-1", "cluster": " c1 ", "host": "server-1"}, Kind.VM)
    assert (spec.facts["cluster"], spec.facts["host"]) == ("c1", "server-1")


# --- GPUs ---------------------------------------------------------------------------------


def test_gpus_are_sorted_by_index_whatever_their_order_in_the_document() -> None:
    spec = parse_device(
        {
            "hostname": "g",
            "gpus": [
                {"index": 2, "vendorCode": "AMD", "modelNo": "c"},
                {"index": 0, "vendorCode": "AMD", "modelNo": "a"},
                {"index": 1, "vendorCode": "AMD", "modelNo": "b"},
            ],
        }
    )
    assert [(gpu.index, gpu.model_no) for gpu in spec.gpus] == [(0, "a"), (1, "b"), (2, "c")]


def test_a_gpu_without_an_index_takes_its_position_and_memory_may_be_absent() -> None:
    spec = parse_device(
        {
            "hostname": "g",
            "gpus": [
                {"vendorCode": "NVIDIA", "modelNo": "A100"},
                {"vendorCode": "NVIDIA", "modelNo": "A100", "memoryMB": None},
            ],
        }
    )
    assert spec.gpus == (Gpu(0, "NVIDIA", "A100", None), Gpu(1, "NVIDIA", "A100", None))


def test_totalgpus_defaults_to_the_number_of_gpus_listed() -> None:
    spec = parse_device({"hostname": "g", "gpus": DGX["gpus"]})
    assert spec.facts["total_gpus"] == 2


def test_totalgpus_without_a_gpu_list_is_kept() -> None:
    assert parse_device({"hostname": "g", "totalgpus": 8}).facts["total_gpus"] == 8
    # An exported device whose GPUs were never itemised has "gpus": [] next to its total.
    spec = parse_device({"hostname": "g", "totalgpus": 8, "gpus": []})
    assert (spec.facts["total_gpus"], spec.gpus) == (8, ())


def test_rejects_totalgpus_that_disagrees_with_the_gpus_listed() -> None:
    assert device_errors(with_(DGX, totalgpus=8)) == [("totalgpus", "is 8 but 2 gpus are listed")]


def test_a_bad_gpu_entry_is_not_also_blamed_on_totalgpus() -> None:
    gpus = [{"vendorCode": "NVIDIA", "modelNo": "H100"}, {"modelNo": "H100"}]
    assert device_fields({"hostname": "g", "totalgpus": 2, "gpus": gpus}) == ["gpus[1].vendorCode"]


def test_rejects_a_gpu_index_listed_twice_naming_the_second_entry() -> None:
    gpus = [
        {"index": 3, "vendorCode": "NVIDIA", "modelNo": "H100"},
        {"index": 3, "vendorCode": "NVIDIA", "modelNo": "H100"},
    ]
    assert device_errors({"hostname": "g", "gpus": gpus}) == [
        ("gpus[1].index", "GPU index 3 is listed twice")
    ]


def test_rejects_an_explicit_index_equal_to_another_gpus_position() -> None:
    gpus = [
        {"vendorCode": "NVIDIA", "modelNo": "H100"},  # position 0, so index 0
        {"index": 0, "vendorCode": "NVIDIA", "modelNo": "H100"},
    ]
    assert device_fields({"hostname": "g", "gpus": gpus}) == ["gpus[1].index"]


def test_requires_vendor_code_and_model_number_of_every_gpu() -> None:
    gpus = [
        {"vendorCode": "NVIDIA", "modelNo": "H100"},
        {"memoryMB": 1024},
        {"vendorCode": " ", "modelNo": ""},
    ]
    assert device_fields({"hostname": "g", "gpus": gpus}) == [
        "gpus[1].vendorCode",
        "gpus[1].modelNo",
        "gpus[2].vendorCode",
        "gpus[2].modelNo",
    ]


def test_rejects_a_boolean_vendor_code_naming_the_gpu_entry() -> None:
    gpus = [
        {"vendorCode": "NVIDIA", "modelNo": "H100"},
        {"vendorCode": True, "modelNo": "H100"},
    ]
    assert device_errors({"hostname": "g", "gpus": gpus}) == [
        ("gpus[1].vendorCode", "must be a string, got boolean True")
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "must not be negative, got -1"),
        (True, "must be a whole number, got boolean True"),
        ("80GB", "must be a whole number, got string '80GB'"),
        (0.5, "must be a whole number, got number 0.5"),
        (MAX_AMOUNT + 1, f"must be at most {MAX_AMOUNT}, got {MAX_AMOUNT + 1}"),
    ],
)
def test_rejects_a_bad_gpu_memory_naming_the_gpu_entry(value: Any, message: str) -> None:
    gpus = [{"vendorCode": "NVIDIA", "modelNo": "H100", "memoryMB": value}]
    assert device_errors({"hostname": "g", "gpus": gpus}) == [("gpus[0].memoryMB", message)]


def test_rejects_a_negative_gpu_index() -> None:
    gpus = [{"index": -1, "vendorCode": "NVIDIA", "modelNo": "H100"}]
    assert device_errors({"hostname": "g", "gpus": gpus}) == [
        ("gpus[0].index", "must not be negative, got -1")
    ]


def test_rejects_gpus_that_are_not_a_list() -> None:
    assert device_errors({"hostname": "g", "gpus": {"0": {"vendorCode": "NVIDIA"}}}) == [
        ("gpus", "must be a list of GPU objects, got object")
    ]
    assert device_fields({"hostname": "g", "gpus": 8}) == ["gpus"]


def test_rejects_a_gpu_entry_that_is_not_an_object() -> None:
    errors = device_errors({"hostname": "g", "gpus": ["H100"]})
    assert errors[0] == ("gpus[0]", "must be an object, got string")
    # It cannot name a vendor or a model either; those are reported under the entry too.
    assert [field for field, _ in errors] == ["gpus[0]", "gpus[0].vendorCode", "gpus[0].modelNo"]


def test_rejects_an_unknown_field_inside_a_gpu_entry() -> None:
    gpus = [{"vendor": "NVIDIA", "vendorCode": "NVIDIA", "modelNo": "H100"}]
    ((field, message),) = device_errors({"hostname": "g", "gpus": gpus})
    assert field == "gpus[0].vendor"
    assert message.startswith("unknown field 'vendor' (known fields: ")
    assert "vendorCode" in message


def test_rejects_more_gpus_than_one_item_can_hold() -> None:
    errors = device_errors({"hostname": "g", "gpus": [{}] * (MAX_COUNT + 1)})
    assert errors == [("gpus", f"lists {MAX_COUNT + 1} GPUs; at most {MAX_COUNT}")]


# --- parse_device: every kind of bad field -------------------------------------------------


def test_rejects_negative_cpu_naming_the_field() -> None:
    assert device_errors({"hostname": "n", "totalcpu": -1}) == [
        ("totalcpu", "must not be negative, got -1")
    ]


@pytest.mark.parametrize("field", ["totalcpu", "totalmemoryMB", "totalstorageGB", "totalgpus"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be a whole number, got boolean True"),
        (False, "must be a whole number, got boolean False"),
        ("8", "must be a whole number, got string '8'"),
        (1.5, "must be a whole number, got number 1.5"),
        ([8], "must be a whole number, got list [8]"),
        ({"n": 8}, "must be a whole number, got object {'n': 8}"),
        (-3, "must not be negative, got -3"),
        (-3.0, "must not be negative, got -3"),
    ],
)
def test_rejects_a_count_that_is_not_a_non_negative_whole_number(
    field: str, value: Any, message: str
) -> None:
    assert device_errors({"hostname": "n", field: value}) == [(field, message)]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite_numbers(value: float) -> None:
    assert device_fields({"hostname": "n", "totalmemoryMB": value}) == ["totalmemoryMB"]


@pytest.mark.parametrize(
    ("field", "maximum"),
    [
        ("totalcpu", MAX_COUNT),
        ("totalgpus", MAX_COUNT),
        ("totalmemoryMB", MAX_AMOUNT),
        ("totalstorageGB", MAX_AMOUNT),
    ],
)
def test_rejects_a_count_above_its_maximum(field: str, maximum: int) -> None:
    assert device_errors({"hostname": "n", field: maximum + 1}) == [
        (field, f"must be at most {maximum}, got {maximum + 1}")
    ]


@pytest.mark.parametrize("hostname", [None, "", "   "])
def test_requires_a_hostname(hostname: Any) -> None:
    raw = {} if hostname is None else {"hostname": hostname}
    assert device_errors(raw) == [("hostname", "is required and must be a non-empty string")]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "must be a string, got boolean True"),
        (["a"], "must be a string, got list ['a']"),
        ({"a": 1}, "must be a string, got object {'a': 1}"),
        (1.5, "must be a string, got number 1.5"),
    ],
)
def test_rejects_a_hostname_that_is_not_text(value: Any, message: str) -> None:
    assert device_errors({"hostname": value}) == [("hostname", message)]


def test_rejects_a_hostname_longer_than_the_maximum() -> None:
    assert device_errors({"hostname": "h" * (MAX_NAME + 1)}) == [
        ("hostname", f"must be at most {MAX_NAME} characters, got {MAX_NAME + 1}")
    ]


@pytest.mark.parametrize("text", ["server\n42", "server\t42", "a\x00b"])
def test_rejects_control_characters_in_text(text: str) -> None:
    assert device_fields({"hostname": "ok", "serial": text}) == ["serial"]


def test_rejects_status_allocated_because_only_matching_allocates() -> None:
    for value in ("allocated", "ALLOCATED"):
        assert device_errors({"hostname": "a", "status": value}) == [
            ("status", "'allocated' is set by matchDevice, not by an import or edit")
        ]


def test_rejects_an_unknown_status_listing_the_settable_ones() -> None:
    ((field, message),) = device_errors({"hostname": "a", "status": "broken"})
    assert field == "status"
    assert message == (
        "unknown status 'broken' (one of: available, reserved, maintenance, offline, retired)"
    )


def test_rejects_a_non_text_status() -> None:
    assert device_fields({"hostname": "a", "status": 1}) == ["status"]


def test_rejects_a_kind_that_contradicts_the_section() -> None:
    assert device_errors({"hostname": "a", "kind": "vm"}) == [
        ("kind", "is 'vm' but the item is listed as 'baremetal'")
    ]
    assert device_errors({"hostname": "a", "kind": "baremetal"}, Kind.VM) == [
        ("kind", "is 'baremetal' but the item is listed as 'vm'")
    ]
    assert device_fields({"hostname": "a", "kind": "switch"}) == ["kind"]


def test_rejects_an_unknown_field_listing_the_known_ones() -> None:
    ((field, message),) = device_errors({"hostname": "a", "cpus": 8})
    assert field == "cpus"
    assert message.startswith("unknown field 'cpus' (known fields: ")
    assert "totalcpu" in message and "hostname" in message


def test_cluster_and_host_are_unknown_fields_of_a_baremetal_device() -> None:
    assert device_fields({"hostname": "a", "cluster": "c", "host": "h"}) == ["cluster", "host"]


def test_accepts_the_read_only_fields_of_an_exported_document() -> None:
    spec = parse_device(
        {
            "hostname": "ro",
            "id": "not-even-a-uuid",
            "createdAt": "2025-01-01T00:00:00Z",
            "updatedAt": "2025-01-02T00:00:00Z",
            "generation": 9,
            "free": {"cpu": 1},
            "attention": [{"code": "NETBOX_DELETED"}],
        }
    )
    assert spec == DeviceSpec(kind=Kind.BAREMETAL, hostname="ro")


@pytest.mark.parametrize("raw", [[], "server-1", 42, None, True])
def test_rejects_a_document_that_is_not_an_object(raw: Any) -> None:
    errors = device_errors(raw)
    assert errors[0][0] == "(item)"
    assert errors[0][1].startswith("must be an object, got ")
    # ... and then, having no fields at all, it has no hostname.
    assert errors[1:] == [("hostname", "is required and must be a non-empty string")]


def test_reports_every_bad_field_of_a_document_in_one_pass() -> None:
    raw = {
        "hostname": "",
        "status": "allocated",
        "totalcpu": -1,
        "totalmemoryMB": "lots",
        "gpus": [{"vendorCode": "NVIDIA"}],
        "tags": {"ok": True},
        "colour": "green",
        "source": {"system": "netbox"},
    }
    assert device_fields(raw) == [
        "colour",
        "hostname",
        "gpus[0].modelNo",
        "status",
        "totalcpu",
        "totalmemoryMB",
        "tags.ok",
        "source.id",
    ]


def test_errors_carry_the_row_and_section_they_were_parsed_with() -> None:
    with pytest.raises(DocumentError) as caught:
        parse_device({"hostname": "x", "totalcpu": -1}, row=7, section="devices")
    (error,) = caught.value.errors
    assert (error.row, error.field, error.section) == (7, "totalcpu", "devices")
    assert error.as_dict() == {
        "row": 7,
        "field": "totalcpu",
        "message": "must not be negative, got -1",
        "section": "devices",
    }


def test_the_error_text_joins_every_field_and_message() -> None:
    with pytest.raises(DocumentError) as caught:
        parse_device({"totalcpu": -1})
    assert str(caught.value) == (
        "hostname: is required and must be a non-empty string; "
        "totalcpu: must not be negative, got -1"
    )


# --- tags -----------------------------------------------------------------------------------


def test_rejects_boolean_tag_values_naming_the_tag() -> None:
    assert device_errors({"hostname": "t", "tags": {"shareable": False}}) == [
        ("tags.shareable", "must be a string, got boolean")
    ]


@pytest.mark.parametrize(
    ("value", "kind"), [(None, "null"), (["a"], "list"), ({"a": "b"}, "object")]
)
def test_rejects_tag_values_that_are_not_text_or_numbers(value: Any, kind: str) -> None:
    assert device_errors({"hostname": "t", "tags": {"k": value}}) == [
        ("tags.k", f"must be a string, got {kind}")
    ]


def test_rejects_a_tag_value_longer_than_the_maximum_saying_so() -> None:
    assert device_errors({"hostname": "t", "tags": {"note": "x" * (MAX_NAME + 1)}}) == [
        ("tags.note", f"must be at most {MAX_NAME} characters, got {MAX_NAME + 1}")
    ]


def test_rejects_empty_and_overlong_tag_keys() -> None:
    long_key = "k" * (MAX_NAME + 1)
    assert device_errors({"hostname": "t", "tags": {"": "v", long_key: "v"}}) == [
        ("tags.", "tag keys must be 1 to 255 characters"),
        (f"tags.{long_key}", "tag keys must be 1 to 255 characters"),
    ]


@pytest.mark.parametrize(("value", "kind"), [(["a:b"], "list"), ("a:b", "string"), (1, "number")])
def test_rejects_tags_that_are_not_an_object(value: Any, kind: str) -> None:
    assert device_errors({"hostname": "t", "tags": value}) == [
        ("tags", f"must be an object of key: value strings, got {kind}")
    ]


# --- source ---------------------------------------------------------------------------------


def test_a_netbox_source_needs_its_id() -> None:
    assert device_errors({"hostname": "s", "source": {"system": "netbox"}}) == [
        ("source.id", "is required when the source system is 'netbox'")
    ]


def test_the_source_system_is_case_insensitive() -> None:
    spec = parse_device({"hostname": "s", "source": {"system": "NetBox", "id": 7}})
    assert spec.source == Source(SourceSystem.NETBOX, 7, None)


def test_a_manual_source_drops_any_id() -> None:
    spec = parse_device({"hostname": "s", "source": {"system": "manual", "id": 7}})
    assert spec.source == Source(SourceSystem.MANUAL, None, None)
    assert spec.source.document() == {"system": "manual"}


def test_rejects_an_unknown_source_system() -> None:
    assert device_errors({"hostname": "s", "source": {"system": "csv"}}) == [
        ("source.system", "must be 'manual' or 'netbox', got 'csv'")
    ]


def test_rejects_a_bad_source_id_and_url() -> None:
    assert device_fields(
        {"hostname": "s", "source": {"system": "manual", "id": -5, "url": ["x"]}}
    ) == ["source.id", "source.url"]


def test_rejects_an_unknown_source_field_rather_than_dropping_it() -> None:
    ((field, message),) = device_errors(
        {"hostname": "s", "source": {"system": "netbox", "id": 5, "URL": "https://nb/"}}
    )
    assert field == "source.URL"
    assert message == "unknown field 'URL' (known fields: id, system, url)"


def test_rejects_a_source_that_is_not_an_object() -> None:
    assert device_errors({"hostname": "s", "source": "netbox"}) == [
        ("source", "must be an object, got string")
    ]


# --- InfiniBand ports inside a device document ---------------------------------------------


def test_an_empty_port_list_is_kept_apart_from_an_absent_one() -> None:
    # [] says "this device has no ports" (an upsert removes them); absent leaves them alone.
    assert parse_device({"hostname": "p", "infiniband": []}).infiniband == ()
    assert parse_device({"hostname": "p"}).infiniband is None


def test_parses_ports_with_optional_details() -> None:
    spec = parse_device(
        {
            "hostname": "p",
            "infiniband": [{"name": " ib0 "}, {"name": "ib1", "rateGbps": 200.0, "fabric": "f"}],
        }
    )
    assert spec.infiniband == (
        IbPort("ib0"),
        IbPort("ib1", port_facts_with(rate_gbps=200, fabric="f")),
    )


def test_rejects_a_port_name_listed_twice_on_one_device() -> None:
    ports = [{"name": "ib0"}, {"name": "ib1"}, {"name": "ib0"}]
    assert device_errors({"hostname": "p", "infiniband": ports}) == [
        ("infiniband[2].name", "port 'ib0' is listed twice")
    ]


def test_reports_the_other_bad_fields_of_a_port_without_a_name() -> None:
    ports = [{"rateGbps": -1, "fabric": ["a"]}]
    assert device_fields({"hostname": "p", "infiniband": ports}) == [
        "infiniband[0].name",
        "infiniband[0].rateGbps",
        "infiniband[0].fabric",
    ]


def test_rejects_bad_port_fields_naming_the_port_entry() -> None:
    ports = [{"name": "ib0", "rateGbps": True, "speed": 400}]
    assert device_fields({"hostname": "p", "infiniband": ports}) == [
        "infiniband[0].speed",
        "infiniband[0].rateGbps",
    ]


def test_rejects_ports_that_are_not_a_list_of_objects() -> None:
    assert device_errors({"hostname": "p", "infiniband": "ib0"}) == [
        ("infiniband", "must be a list of port objects, got string")
    ]
    assert device_fields({"hostname": "p", "infiniband": ["ib0"]}) == [
        "infiniband[0]",
        "infiniband[0].name",
    ]


# --- an exported document re-parses ---------------------------------------------------------


def test_an_exported_document_with_read_only_fields_re_parses_to_the_same_spec() -> None:
    spec = parse_device(DGX)
    assert parse_device(exported(spec)) == spec


def test_an_exported_vm_document_re_parses_to_the_same_spec() -> None:
    spec = parse_device(
        {"hostname": "vm-1", "status": "offline", "cluster": "c1", "host": "server-42"}, Kind.VM
    )
    again = parse_device(exported(spec), Kind.VM)
    assert again == dataclasses.replace(spec, infiniband=())


def test_the_gpu_document_uses_the_document_field_names() -> None:
    assert Gpu(3, "AMD", "MI300X", 196608).document() == {
        "index": 3,
        "vendorCode": "AMD",
        "modelNo": "MI300X",
        "memoryMB": 196608,
    }


def test_the_netbox_source_document_round_trips() -> None:
    source = Source(SourceSystem.NETBOX, 5, "https://nb/api/dcim/devices/5/")
    assert source.document() == {
        "system": "netbox",
        "id": 5,
        "url": "https://nb/api/dcim/devices/5/",
    }
    assert parse_device({"hostname": "h", "source": source.document()}).source == source


# --- parse_switch ---------------------------------------------------------------------------

SWITCH = {
    "name": " leaf-1 ",
    "kind": "switch",
    "status": "available",
    "manufacturer": "NVIDIA",
    "model": "QM9700",
    "role": "leaf",
    "site": "blr-1",
    "managementAddress": "10.0.0.1",
    "fabric": "fabric-a",
    "tags": {"rackUnit": 40},
    "tenant": "acme",
}


def test_parses_a_switch_document() -> None:
    assert parse_switch(SWITCH) == SwitchSpec(
        name="leaf-1",
        status=Status.AVAILABLE,
        facts=switch_facts_with(
            manufacturer="NVIDIA",
            model="QM9700",
            role="leaf",
            site="blr-1",
            management_address="10.0.0.1",
            fabric="fabric-a",
        ),
        tags={"rackUnit": "40"},
        tenant="acme",
    )


def test_an_exported_switch_with_read_only_fields_re_parses() -> None:
    raw = with_(SWITCH, id="x", createdAt="t", updatedAt="t", generation=2, project=None)
    raw["source"] = {"system": "manual"}
    assert parse_switch(raw) == parse_switch(SWITCH)


def test_a_switch_needs_a_name() -> None:
    assert switch_fields({"role": "leaf"}) == ["name"]


def test_a_switch_has_no_hostname() -> None:
    assert switch_fields({"name": "s", "hostname": "s"}) == ["hostname"]


def test_rejects_a_switch_listed_as_another_kind() -> None:
    with pytest.raises(DocumentError) as caught:
        parse_switch({"name": "s", "kind": "baremetal"})
    assert [(e.field, e.message) for e in caught.value.errors] == [
        ("kind", "is 'baremetal' but the item is listed as 'switch'")
    ]


def test_rejects_an_allocated_switch_and_bad_switch_fields_together() -> None:
    assert switch_fields(
        {"name": "s", "status": "allocated", "managementAddress": 1.5, "tags": []}
    ) == ["status", "managementAddress", "tags"]


def test_switch_errors_carry_row_and_section() -> None:
    with pytest.raises(DocumentError) as caught:
        parse_switch({}, row=3, section="switches")
    assert [e.as_dict() for e in caught.value.errors] == [
        {
            "row": 3,
            "field": "name",
            "message": "is required and must be a non-empty string",
            "section": "switches",
        }
    ]


# --- parse_infiniband -------------------------------------------------------------------------


def test_parses_an_infiniband_component_and_names_it_device_colon_port() -> None:
    spec = parse_infiniband(
        {"device": " server-42 ", "port": "ib0", "rateGbps": 400, "fabric": "f", "switch": "s"}
    )
    assert spec == InfinibandSpec(
        device="server-42", port="ib0", facts=port_facts_with(rate_gbps=400, fabric="f", switch="s")
    )
    assert spec.name == "server-42:ib0" == infiniband_name("server-42", "ib0")


def test_accepts_a_name_equal_to_device_colon_port() -> None:
    raw = {"name": "server-42:ib0", "device": "server-42", "port": "ib0", "kind": "infiniband"}
    assert parse_infiniband(raw).name == "server-42:ib0"


def test_rejects_an_infiniband_name_that_is_not_device_colon_port() -> None:
    raw = {"name": "ib0", "device": "server-42", "port": "ib0"}
    assert infiniband_errors(raw) == [
        ("name", "must be '<device>:<port>' = 'server-42:ib0', got 'ib0'")
    ]


def test_an_infiniband_component_needs_device_and_port() -> None:
    assert [field for field, _ in infiniband_errors({"name": "a:b"})] == ["device", "port"]


def test_rejects_bad_infiniband_fields() -> None:
    raw = {
        "device": "d",
        "port": "p",
        "kind": "switch",
        "status": "allocated",
        "rateGbps": -400,
        "speed": 400,
    }
    assert [field for field, _ in infiniband_errors(raw)] == [
        "speed",
        "kind",
        "status",
        "rateGbps",
    ]


def test_an_exported_infiniband_component_re_parses() -> None:
    raw = {
        "id": "x",
        "kind": "infiniband",
        "name": "server-42:ib0",
        "device": "server-42",
        "port": "ib0",
        "status": "available",
        "rateGbps": 400,
        "fabric": "f",
        "switch": None,
        "tags": {},
        "tenant": None,
        "project": None,
        "source": {"system": "manual"},
        "createdAt": "t",
        "updatedAt": "t",
        "generation": 1,
    }
    assert parse_infiniband(raw) == InfinibandSpec(
        device="server-42",
        port="ib0",
        status=Status.AVAILABLE,
        facts=port_facts_with(rate_gbps=400, fabric="f"),
    )


# --- properties -------------------------------------------------------------------------------

names = st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True)
padding = st.sampled_from(["", " ", "  "])
vendors = st.sampled_from(["nvidia", "NVIDIA", "Nvidia", "amd", "AMD", "intel", "habana"])
tag_values = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:/-]{0,40}", fullmatch=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


def expected_tag(value: str | int | float) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


def maybe_float(n: int) -> st.SearchStrategy[int | float]:
    """A whole number as JSON might carry it: 8 or 8.0 (exact below 2**53)."""
    return st.sampled_from([n, float(n)])


@st.composite
def device_documents(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A valid device document and the facts parse_device must read out of it."""
    hostname = draw(names)
    n_gpus = draw(st.integers(min_value=0, max_value=8))
    order = draw(st.permutations(list(range(n_gpus))))
    explicit_index = draw(st.booleans())
    gpus, expected_gpus = [], {}
    for position, index in enumerate(order):
        vendor = draw(vendors)
        model = draw(names)
        memory = draw(st.none() | st.integers(min_value=0, max_value=MAX_AMOUNT))
        entry: dict[str, Any] = {
            "vendorCode": draw(padding) + vendor + draw(padding),
            "modelNo": model,
        }
        if memory is not None or draw(st.booleans()):
            entry["memoryMB"] = memory
        if explicit_index:
            entry["index"] = index
        gpus.append(entry)
        key = index if explicit_index else position
        expected_gpus[key] = (vendor.upper(), model, memory)
    cpu = draw(st.integers(min_value=0, max_value=MAX_COUNT))
    memory_mb = draw(st.integers(min_value=0, max_value=MAX_AMOUNT))
    storage_gb = draw(st.integers(min_value=0, max_value=MAX_AMOUNT))
    tags = draw(st.dictionaries(names, tag_values, max_size=5))
    ports = draw(st.lists(names, unique=True, max_size=4))
    status = draw(st.none() | st.sampled_from([s for s in Status if s != Status.ALLOCATED]))
    document: dict[str, Any] = {
        "hostname": draw(padding) + hostname + draw(padding),
        "totalcpu": draw(maybe_float(cpu)),
        "totalmemoryMB": draw(maybe_float(memory_mb)),
        "totalstorageGB": draw(maybe_float(storage_gb)),
        "tags": tags,
        "infiniband": [
            {"name": port, "rateGbps": draw(st.integers(min_value=0, max_value=MAX_COUNT))}
            for port in ports
        ],
    }
    if gpus or draw(st.booleans()):
        document["gpus"] = gpus
    if draw(st.booleans()):
        document["totalgpus"] = n_gpus
    if status is not None:
        document["status"] = draw(st.sampled_from([status.value, status.value.upper()]))
    if draw(st.booleans()):
        document["kind"] = "baremetal"
    facts = {
        "hostname": hostname,
        "status": status,
        "totals": (cpu, memory_mb, storage_gb, n_gpus),
        "gpus": [(index, *expected_gpus[index]) for index in sorted(expected_gpus)],
        "tags": {key: expected_tag(value) for key, value in tags.items()},
        "ports": tuple(ports),
    }
    return document, facts


@given(device_documents())
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_property_valid_documents_parse_into_the_same_facts(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    document, facts = case
    spec = parse_device(document, row=4, section="devices")
    assert spec.hostname == facts["hostname"]
    assert spec.status == facts["status"]
    totals = (
        spec.facts["total_cpu"],
        spec.facts["total_memory_mb"],
        spec.facts["total_storage_gb"],
        spec.facts["total_gpus"],
    )
    assert totals == facts["totals"]
    assert all(isinstance(n, int) and not isinstance(n, bool) for n in totals)
    assert [(g.index, g.vendor_code, g.model_no, g.memory_mb) for g in spec.gpus] == facts["gpus"]
    assert spec.tags == facts["tags"]
    assert tuple(port.name for port in spec.infiniband or ()) == facts["ports"]


@given(device_documents())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_property_an_exported_document_re_parses_to_the_same_spec(
    case: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    spec = parse_device(case[0])
    again = parse_device(exported(spec))
    # The export always states a status; everything else must survive unchanged.
    assert again == dataclasses.replace(spec, status=spec.status or Status.AVAILABLE)


def bad_numbers(maximum: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(max_value=-1),
        st.integers(max_value=-1).map(float),
        st.integers(min_value=maximum + 1, max_value=maximum * 1000),
        st.booleans(),
        st.floats().filter(lambda f: not (math.isfinite(f) and f.is_integer())),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(names, st.integers(), max_size=1),
    )


@given(device_documents(), st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_property_one_corrupted_number_fails_naming_exactly_that_field(
    case: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    document, _ = case
    targets: list[tuple[str, dict[str, Any], str, int]] = [
        ("totalcpu", document, "totalcpu", MAX_COUNT),
        ("totalmemoryMB", document, "totalmemoryMB", MAX_AMOUNT),
        ("totalstorageGB", document, "totalstorageGB", MAX_AMOUNT),
        ("totalgpus", document, "totalgpus", MAX_COUNT),
    ]
    for position, gpu in enumerate(document.get("gpus", [])):
        targets.append((f"gpus[{position}].memoryMB", gpu, "memoryMB", MAX_AMOUNT))
    for position, port in enumerate(document["infiniband"]):
        targets.append((f"infiniband[{position}].rateGbps", port, "rateGbps", MAX_COUNT))
    field, holder, key, maximum = data.draw(st.sampled_from(targets))
    holder[key] = data.draw(bad_numbers(maximum))
    with pytest.raises(DocumentError) as caught:
        parse_device(document, row=4, section="devices")
    assert [(e.field, e.row, e.section) for e in caught.value.errors] == [(field, 4, "devices")]


@given(device_documents(), st.data())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_property_one_unknown_field_fails_naming_exactly_that_field(
    case: tuple[dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    document, _ = case
    # DGX lists every field of a device document; the rest are the read-only ones.
    known = set(DGX) | {"id", "createdAt", "updatedAt", "generation", "free", "attention"}
    likely_typos = st.sampled_from(["gpu", "cpu", "memory", "name", "cluster", "host", "speed"])
    unknown = data.draw(st.one_of(likely_typos, names).filter(lambda n: n not in known))
    document[unknown] = "x"
    with pytest.raises(DocumentError) as caught:
        parse_device(document)
    assert [e.field for e in caught.value.errors] == [unknown]
