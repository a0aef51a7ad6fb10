"""Bulk import parsing: a whole JSON or CSV upload becomes specs, or one BAD_INPUT lists every
bad field as ``{row, field, message[, section]}`` and nothing is returned (all or nothing).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.domain.document import MAX_COUNT, Gpu, IbPort, port_facts_with
from api.domain.errors import BAD_INPUT, DomainError
from api.domain.inventory_import import (
    SECTIONS,
    ImportBatch,
    parse_csv_import,
    parse_import,
    parse_json_import,
)
from api.domain.vocabulary import Kind, Status


def refused(call: Any, *args: Any) -> DomainError:
    with pytest.raises(DomainError) as caught:
        call(*args)
    assert caught.value.code == BAD_INPUT
    return caught.value


def json_errors(payload: Any) -> list[dict[str, Any]]:
    """The ``extensions.errors`` of a refused JSON import."""
    error = refused(parse_json_import, json.dumps(payload))
    assert error.extensions["errorCount"] == len(error.extensions["errors"])
    return error.extensions["errors"]


def csv_errors(text: str) -> list[dict[str, Any]]:
    error = refused(parse_csv_import, text)
    assert error.extensions["errorCount"] == len(error.extensions["errors"])
    return error.extensions["errors"]


def where(errors: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(section, row, field) of each error: what a user needs to find the cell."""
    return [(e.get("section"), e["row"], e["field"]) for e in errors]


def gpu(index: int | None = None, **extra: Any) -> dict[str, Any]:
    entry = {"vendorCode": "nvidia", "modelNo": "H100-SXM5-80GB", "memoryMB": 81920, **extra}
    if index is not None:
        entry["index"] = index
    return entry


FLEET: dict[str, Any] = {
    "devices": [
        {
            "hostname": "server-1",
            "totalcpu": 224,
            "totalgpus": 2,
            "gpus": [gpu(0), gpu(1)],
            "tags": {"location": "india"},
            "infiniband": [{"name": "ib0", "rateGbps": 400, "fabric": "fabric-a"}],
        },
        {"hostname": "server-2", "status": "maintenance"},
    ],
    "vms": [{"hostname": "vm-1", "cluster": "c1", "host": "server-1", "totalcpu": 8}],
    "switches": [{"name": "leaf-1", "role": "leaf", "fabric": "fabric-a"}],
    "infinibands": [{"device": "server-2", "port": "ib0", "rateGbps": 200}],
}


# --- format ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "JSON", "Json"])
def test_parse_import_reads_json_in_any_case(fmt: str) -> None:
    batch = parse_import(fmt, json.dumps(FLEET))
    assert [d.hostname for d in batch.devices] == ["server-1", "server-2"]


@pytest.mark.parametrize("fmt", ["csv", "CSV"])
def test_parse_import_reads_csv_in_any_case(fmt: str) -> None:
    batch = parse_import(fmt, "hostname,totalcpu\nserver-1,8\n")
    assert [(d.hostname, d.facts["total_cpu"]) for d in batch.devices] == [("server-1", 8)]


def test_rejects_an_unknown_format_naming_the_format_field() -> None:
    error = refused(parse_import, "xml", "<devices/>")
    assert error.extensions["field"] == "format"
    assert [(e["row"], e["field"]) for e in error.extensions["errors"]] == [(0, "format")]
    assert error.message == "format: unknown import format 'xml' (JSON or CSV)"


# --- JSON: what parses ----------------------------------------------------------------------


def test_json_puts_each_section_in_its_own_list_with_the_sections_kind() -> None:
    batch = parse_json_import(json.dumps(FLEET))
    assert len(batch) == 5
    assert [(d.hostname, d.kind) for d in batch.devices] == [
        ("server-1", Kind.BAREMETAL),
        ("server-2", Kind.BAREMETAL),
    ]
    assert [(v.hostname, v.kind, v.facts["cluster"], v.facts["host"]) for v in batch.vms] == [
        ("vm-1", Kind.VM, "c1", "server-1")
    ]
    assert [(s.name, s.facts["role"]) for s in batch.switches] == [("leaf-1", "leaf")]
    assert [(i.name, i.facts["rate_gbps"]) for i in batch.infinibands] == [("server-2:ib0", 200)]


def test_json_documents_are_normalised() -> None:
    batch = parse_json_import(json.dumps(FLEET))
    first = batch.devices[0]
    assert first.gpus == (
        Gpu(0, "NVIDIA", "H100-SXM5-80GB", 81920),
        Gpu(1, "NVIDIA", "H100-SXM5-80GB", 81920),
    )
    assert first.infiniband == (IbPort("ib0", port_facts_with(rate_gbps=400, fabric="fabric-a")),)
    assert batch.devices[1].status == Status.MAINTENANCE


def test_a_bare_json_list_is_a_list_of_devices() -> None:
    batch = parse_json_import(json.dumps([{"hostname": "a"}, {"hostname": "b"}]))
    assert [d.hostname for d in batch.devices] == ["a", "b"]
    assert (batch.vms, batch.switches, batch.infinibands) == ([], [], [])


@pytest.mark.parametrize("payload", [{}, [], {"devices": None}, {"devices": [], "vms": None}])
def test_an_empty_upload_is_an_empty_batch(payload: Any) -> None:
    batch = parse_json_import(json.dumps(payload))
    assert batch == ImportBatch()
    assert len(batch) == 0


def test_an_imported_id_and_other_read_only_fields_are_ignored() -> None:
    document = {
        "id": "5b0e9a4c-2a53-4b4e-9a59-1f2f6f1d3c11",
        "hostname": "server-1",
        "createdAt": "2025-01-01T00:00:00Z",
        "updatedAt": "2025-01-01T00:00:00Z",
        "generation": 3,
    }
    (spec,) = parse_json_import(json.dumps({"devices": [document]})).devices
    assert spec.hostname == "server-1"
    assert not hasattr(spec, "id")


def test_the_same_hostname_may_be_a_device_and_a_vm() -> None:
    # Hostnames are unique per kind: a VM may share its name with a physical server.
    batch = parse_json_import(
        json.dumps({"devices": [{"hostname": "node"}], "vms": [{"hostname": "node"}]})
    )
    assert [d.hostname for d in batch.devices] == [v.hostname for v in batch.vms] == ["node"]


# --- JSON: structural errors ----------------------------------------------------------------


@pytest.mark.parametrize("data", ["{", '{"devices": [}', "", "devices: []", "{'devices': []}"])
def test_rejects_malformed_json_naming_the_data_field(data: str) -> None:
    error = refused(parse_json_import, data)
    assert error.extensions["field"] == "data"
    assert [(e["row"], e["field"]) for e in error.extensions["errors"]] == [(0, "data")]
    assert error.message.startswith("data: not valid JSON (")
    assert " at line 1 column " in error.message


def test_malformed_json_reports_where_the_syntax_breaks() -> None:
    error = refused(parse_json_import, '{\n  "devices": [\n    {"hostname": "a",}\n  ]\n}')
    assert error.message == (
        "data: not valid JSON (Expecting property name enclosed in double quotes "
        "at line 3 column 22)"
    )


@pytest.mark.parametrize("payload", [42, "devices", None, True])
def test_rejects_json_that_is_neither_an_object_nor_a_list(payload: Any) -> None:
    error = refused(parse_json_import, json.dumps(payload))
    assert error.extensions["field"] == "data"
    assert [(e["row"], e["field"]) for e in error.extensions["errors"]] == [(0, "data")]
    assert error.message == (
        "data: must be a JSON object with keys devices, vms, switches, infinibands"
    )


def test_rejects_unknown_sections_naming_each_of_them() -> None:
    error = refused(parse_json_import, json.dumps({"devices": [], "servers": [], "gpus": []}))
    assert error.extensions["field"] == "data"
    assert [(e["row"], e["field"]) for e in error.extensions["errors"]] == [(0, "data")]
    assert error.message == (
        "data: unknown section(s) 'gpus', 'servers' (known: devices, vms, switches, infinibands)"
    )


@pytest.mark.parametrize(
    ("value", "type_name"),
    [({"hostname": "a"}, "dict"), ({}, "dict"), ("", "str"), (0, "int"), (False, "bool")],
)
def test_rejects_a_section_that_is_not_a_list_even_an_empty_one(value: Any, type_name: str) -> None:
    error = refused(parse_json_import, json.dumps({"vms": value}))
    assert error.extensions["field"] == "vms"
    assert [(e["row"], e["field"]) for e in error.extensions["errors"]] == [(0, "vms")]
    assert error.message == f"data.vms: must be a list, got {type_name}"


# --- JSON: item errors, all reported at once ------------------------------------------------


def test_reports_every_bad_field_of_every_row_of_every_section() -> None:
    payload = {
        "devices": [
            {"hostname": "ok-1"},
            {"hostname": "bad-1", "totalcpu": -1, "status": "allocated"},
            {"hostname": "ok-2"},
            {"totalgpus": True},
        ],
        "vms": [{"hostname": "vm-1", "kind": "baremetal"}],
        "switches": [{"name": "leaf-1", "managementAddress": ["10.0.0.1"]}],
        "infinibands": [{"device": "server-1", "port": "ib0", "name": "ib0"}],
    }
    errors = json_errors(payload)
    assert where(errors) == [
        ("devices", 2, "status"),
        ("devices", 2, "totalcpu"),
        ("devices", 4, "hostname"),
        ("devices", 4, "totalgpus"),
        ("vms", 1, "kind"),
        ("switches", 1, "managementAddress"),
        ("infinibands", 1, "name"),
    ]
    assert all(set(e) == {"row", "field", "message", "section"} for e in errors)


def test_the_refusal_message_points_at_the_first_error_and_says_nothing_was_written() -> None:
    error = refused(
        parse_json_import,
        json.dumps({"devices": [{"hostname": "a"}, {"hostname": "b", "totalcpu": -1}, {}]}),
    )
    assert error.message == (
        "devices row 2, field 'totalcpu': must not be negative, got -1 (and 1 more); "
        "nothing was written"
    )
    assert error.extensions["errorCount"] == 2


def test_rejects_status_allocated_in_an_import() -> None:
    assert json_errors({"devices": [{"hostname": "a", "status": "allocated"}]}) == [
        {
            "row": 1,
            "field": "status",
            "message": "'allocated' is set by matchDevice, not by an import or edit",
            "section": "devices",
        }
    ]


@pytest.mark.parametrize(
    ("section", "item", "listed_as"),
    [
        ("devices", {"hostname": "a", "kind": "vm"}, "baremetal"),
        ("vms", {"hostname": "a", "kind": "baremetal"}, "vm"),
        ("switches", {"name": "a", "kind": "infiniband"}, "switch"),
        ("infinibands", {"device": "a", "port": "p", "kind": "switch"}, "infiniband"),
    ],
)
def test_rejects_a_kind_that_contradicts_the_section(
    section: str, item: dict[str, Any], listed_as: str
) -> None:
    assert json_errors({section: [item]}) == [
        {
            "row": 1,
            "field": "kind",
            "message": f"is {item['kind']!r} but the item is listed as {listed_as!r}",
            "section": section,
        }
    ]


def test_a_kind_that_repeats_the_section_is_accepted() -> None:
    batch = parse_json_import(json.dumps({"vms": [{"hostname": "v", "kind": "vm"}]}))
    assert [v.kind for v in batch.vms] == [Kind.VM]


def test_rejects_totalgpus_that_differs_from_the_gpus_listed() -> None:
    errors = json_errors({"devices": [{"hostname": "a", "totalgpus": 4, "gpus": [gpu(0)]}]})
    assert errors == [
        {
            "row": 1,
            "field": "totalgpus",
            "message": "is 4 but 1 gpus are listed",
            "section": "devices",
        }
    ]


def test_rejects_duplicate_gpu_indexes_naming_the_entry() -> None:
    errors = json_errors({"devices": [{"hostname": "a", "gpus": [gpu(0), gpu(1), gpu(1)]}]})
    assert where(errors) == [("devices", 1, "gpus[2].index")]


def test_rejects_an_item_that_is_not_an_object() -> None:
    errors = json_errors({"switches": [{"name": "ok"}, "leaf-2"]})
    assert where(errors) == [("switches", 2, "(item)"), ("switches", 2, "name")]


def test_shows_at_most_100_errors_but_counts_them_all() -> None:
    error = refused(parse_json_import, json.dumps({"devices": [{}] * 150}))
    assert error.extensions["errorCount"] == 150
    assert len(error.extensions["errors"]) == 100
    assert [e["row"] for e in error.extensions["errors"]] == list(range(1, 101))


# --- duplicates within one upload -----------------------------------------------------------


def test_rejects_a_hostname_listed_twice_naming_both_rows() -> None:
    errors = json_errors({"devices": [{"hostname": "a"}, {"hostname": "b"}, {"hostname": " a "}]})
    assert errors == [
        {
            "row": 3,
            "field": "hostname",
            "message": "'a' is listed twice (also devices row 1)",
            "section": "devices",
        }
    ]


def test_rejects_a_vm_name_listed_twice() -> None:
    errors = json_errors({"vms": [{"hostname": "v"}, {"hostname": "v"}]})
    assert where(errors) == [("vms", 2, "hostname")]


def test_rejects_a_switch_name_listed_twice() -> None:
    errors = json_errors({"switches": [{"name": "leaf"}, {"name": "leaf"}]})
    assert errors[0]["message"] == "'leaf' is listed twice (also switches row 1)"
    assert where(errors) == [("switches", 2, "name")]


def test_rejects_an_infiniband_component_listed_twice() -> None:
    port = {"device": "server-1", "port": "ib0"}
    errors = json_errors({"infinibands": [port, {**port, "name": "server-1:ib0"}]})
    assert errors == [
        {
            "row": 2,
            "field": "name",
            "message": "'server-1:ib0' is listed twice (also infinibands row 1)",
            "section": "infinibands",
        }
    ]


def test_rejects_an_ib_port_name_listed_twice_on_one_device() -> None:
    device = {"hostname": "a", "infiniband": [{"name": "ib0"}, {"name": "ib0"}]}
    errors = json_errors({"devices": [device]})
    assert where(errors) == [("devices", 1, "infiniband[1].name")]
    assert errors[0]["message"] == "port 'ib0' is listed twice"


def test_rejects_a_port_both_listed_on_its_device_and_as_an_infiniband_item() -> None:
    payload = {
        "devices": [{"hostname": "server-1", "infiniband": [{"name": "ib0"}]}],
        "infinibands": [{"device": "server-1", "port": "ib0"}],
    }
    errors = json_errors(payload)
    assert errors == [
        {
            "row": 1,
            "field": "name",
            "message": "'server-1:ib0' is listed twice (also devices row 1)",
            "section": "infinibands",
        }
    ]


def test_rejects_two_devices_whose_ports_have_the_same_component_name() -> None:
    # "a:b" + port "c" and "a" + port "b:c" both name the component "a:b:c".
    payload = {
        "devices": [
            {"hostname": "a:b", "infiniband": [{"name": "c"}]},
            {"hostname": "a", "infiniband": [{"name": "b:c"}]},
        ]
    }
    assert where(json_errors(payload)) == [("devices", 2, "infiniband")]


def test_duplicates_and_bad_fields_are_reported_together() -> None:
    payload = {"devices": [{"hostname": "a"}, {"hostname": "a"}, {"hostname": "b", "rack": 1.5}]}
    assert where(json_errors(payload)) == [("devices", 2, "hostname"), ("devices", 3, "rack")]


# --- CSV: what parses -----------------------------------------------------------------------


def test_csv_expands_gpu_columns_into_identical_gpus() -> None:
    data = (
        "hostname,totalcpu,totalmemoryMB,gpuCount,gpuVendor,gpuModel,gpuMemoryMB\n"
        "server-1,224,2097152,4,nvidia,H100-SXM5-80GB,81920\n"
    )
    (spec,) = parse_csv_import(data).devices
    assert (spec.hostname, spec.facts["total_cpu"], spec.facts["total_memory_mb"]) == (
        "server-1",
        224,
        2097152,
    )
    assert spec.facts["total_gpus"] == 4
    assert spec.gpus == tuple(Gpu(i, "NVIDIA", "H100-SXM5-80GB", 81920) for i in range(4))


def test_csv_gpu_memory_is_optional() -> None:
    (spec,) = parse_csv_import("hostname,gpuCount,gpuVendor,gpuModel\ns,1,amd,MI300X\n").devices
    assert spec.gpus == (Gpu(0, "AMD", "MI300X", None),)


def test_csv_totalgpus_must_agree_with_gpu_count() -> None:
    data = "hostname,totalgpus,gpuCount,gpuVendor,gpuModel\ns,8,4,nvidia,H100\n"
    assert csv_errors(data) == [
        {"row": 2, "field": "totalgpus", "message": "is 8 but 4 gpus are listed"}
    ]


def test_csv_tag_columns_become_tags_and_empty_cells_are_absent() -> None:
    data = "hostname,tags.location,tags.gputype,site\nserver-1,india,H100,blr-1\nserver-2,,A100,\n"
    first, second = parse_csv_import(data).devices
    assert first.tags == {"location": "india", "gputype": "H100"}
    assert first.facts["site"] == "blr-1"
    assert second.tags == {"gputype": "A100"}
    assert second.facts["site"] is None


def test_csv_cells_are_trimmed_and_quoted_cells_may_hold_commas() -> None:
    data = 'hostname,model,totalcpu\n  server-1 ," DGX, H100 ", 64 \n'
    (spec,) = parse_csv_import(data).devices
    assert (spec.hostname, spec.facts["model"], spec.facts["total_cpu"]) == (
        "server-1",
        "DGX, H100",
        64,
    )


def test_csv_kind_column_picks_the_section() -> None:
    data = (
        "kind,hostname,name,cluster,host,role,managementAddress,device,port,rateGbps\n"
        ",server-1,,,,,,,,\n"
        "VM,vm-1,,c1,server-1,,,,,\n"
        "switch,,leaf-1,,,leaf,10.0.0.1,,,\n"
        "infiniband,,,,,,,server-1,ib0,400\n"
        "baremetal,server-2,,,,,,,,\n"
    )
    batch = parse_csv_import(data)
    assert [d.hostname for d in batch.devices] == ["server-1", "server-2"]
    assert [(v.hostname, v.kind, v.facts["cluster"], v.facts["host"]) for v in batch.vms] == [
        ("vm-1", Kind.VM, "c1", "server-1")
    ]
    assert [(s.name, s.facts["role"], s.facts["management_address"]) for s in batch.switches] == [
        ("leaf-1", "leaf", "10.0.0.1")
    ]
    assert [(i.name, i.facts["rate_gbps"]) for i in batch.infinibands] == [("server-1:ib0", 400)]


def test_csv_name_column_is_the_hostname_of_a_device_row() -> None:
    batch = parse_csv_import("kind,name\nbaremetal,server-1\nvm,vm-1\nswitch,leaf-1\n")
    assert [d.hostname for d in batch.devices] == ["server-1"]
    assert [v.hostname for v in batch.vms] == ["vm-1"]
    assert [s.name for s in batch.switches] == ["leaf-1"]


def test_csv_with_only_a_header_is_an_empty_batch() -> None:
    assert parse_csv_import("hostname,totalcpu\n") == ImportBatch()


def test_csv_gpu_count_zero_means_no_gpus() -> None:
    (spec,) = parse_csv_import("hostname,gpuCount\ns,0\n").devices
    assert (spec.gpus, spec.facts["total_gpus"]) == ((), 0)


# --- CSV: errors ----------------------------------------------------------------------------


def test_rejects_a_non_numeric_csv_cell_naming_row_and_column() -> None:
    data = "hostname,totalcpu\nserver-1,64\nserver-2,lots\n"
    assert csv_errors(data) == [
        {"row": 3, "field": "totalcpu", "message": "must be a whole number, got 'lots'"}
    ]


@pytest.mark.parametrize("cell", ["8.0", "1e3", "eight", "0x10", "-"])
def test_rejects_csv_numbers_that_are_not_whole_decimal_numbers(cell: str) -> None:
    assert where(csv_errors(f"hostname,totalmemoryMB\ns,{cell}\n")) == [(None, 2, "totalmemoryMB")]


def test_rejects_a_negative_csv_number_through_the_document_rules() -> None:
    assert csv_errors("hostname,totalstorageGB\ns,-5\n") == [
        {"row": 2, "field": "totalstorageGB", "message": "must not be negative, got -5"}
    ]


def test_rejects_every_unknown_csv_column_on_row_1() -> None:
    data = "hostname,cpus,tags.location,gpu_vendor\nserver-1,8,india,nvidia\n"
    assert csv_errors(data) == [
        {"row": 1, "field": "cpus", "message": "unknown column 'cpus'"},
        {"row": 1, "field": "gpu_vendor", "message": "unknown column 'gpu_vendor'"},
    ]


def test_document_field_names_that_are_not_csv_columns_are_unknown_columns() -> None:
    # GPUs come in as gpuCount/gpuVendor/gpuModel/gpuMemoryMB, tags as tags.<key>.
    assert where(csv_errors("hostname,gpus,tags\ns,x,y\n")) == [
        (None, 1, "gpus"),
        (None, 1, "tags"),
    ]


def test_rejects_a_row_with_more_cells_than_the_header() -> None:
    data = "hostname,totalcpu\nserver-1,8\nserver-2,8,extra,more\n"
    assert csv_errors(data) == [
        {"row": 3, "field": "(row)", "message": "has 2 cell(s) more than the header"}
    ]


def test_a_row_with_fewer_cells_than_the_header_leaves_the_rest_absent() -> None:
    (spec,) = parse_csv_import("hostname,totalcpu,site\nserver-1\n").devices
    assert (spec.hostname, spec.facts["total_cpu"], spec.facts["site"]) == ("server-1", 0, None)


def test_rejects_a_csv_without_a_header() -> None:
    error = refused(parse_csv_import, "")
    assert error.extensions["field"] == "data"
    assert [(e["row"], e["field"]) for e in error.extensions["errors"]] == [(0, "data")]
    assert error.message == "data: the CSV has no header row"


def test_rejects_an_unknown_kind_in_a_csv_row() -> None:
    data = "kind,hostname\nserver,s1\n"
    assert csv_errors(data) == [
        {
            "row": 2,
            "field": "kind",
            "message": "unknown kind 'server' (one of: baremetal, vm, switch, infiniband)",
        }
    ]


def test_rejects_gpu_details_without_a_gpu_count() -> None:
    data = "hostname,gpuCount,gpuVendor,gpuModel\ns,,nvidia,H100\n"
    assert csv_errors(data) == [
        {
            "row": 2,
            "field": "gpuCount",
            "message": "is required when gpuVendor, gpuModel or gpuMemoryMB are given",
        }
    ]


def test_a_non_numeric_gpu_count_is_reported_once() -> None:
    data = "hostname,gpuCount,gpuVendor,gpuModel\ns,eight,nvidia,H100\n"
    assert csv_errors(data) == [
        {"row": 2, "field": "gpuCount", "message": "must be a whole number, got 'eight'"}
    ]


@pytest.mark.parametrize("count", [-1, -8, MAX_COUNT + 1, 10**12])
def test_rejects_a_gpu_count_out_of_range_instead_of_building_it(count: int) -> None:
    data = f"hostname,gpuCount,gpuVendor,gpuModel\ns,{count},nvidia,H100\n"
    assert csv_errors(data) == [
        {
            "row": 2,
            "field": "gpuCount",
            "message": f"must be between 0 and {MAX_COUNT}, got {count}",
        }
    ]


def test_gpu_count_without_vendor_and_model_names_each_missing_gpu_field() -> None:
    errors = csv_errors("hostname,gpuCount\ns,2\n")
    assert where(errors) == [
        (None, 2, "gpus[0].vendorCode"),
        (None, 2, "gpus[0].modelNo"),
        (None, 2, "gpus[1].vendorCode"),
        (None, 2, "gpus[1].modelNo"),
    ]


def test_csv_document_errors_carry_the_row_but_no_section() -> None:
    data = "hostname,status,tags.location\nserver-1,allocated,india\n"
    assert csv_errors(data) == [
        {
            "row": 2,
            "field": "status",
            "message": "'allocated' is set by matchDevice, not by an import or edit",
        }
    ]


def test_csv_rows_are_numbered_as_a_spreadsheet_shows_them() -> None:
    # Header is row 1; a blank line still occupies a row.
    data = "hostname,totalcpu\nok-1,1\n\nbad,-1\nok-2,2\nworse,x\n"
    assert where(csv_errors(data)) == [(None, 6, "totalcpu"), (None, 4, "totalcpu")]


def test_csv_refusal_message_has_no_section() -> None:
    error = refused(parse_csv_import, "hostname,totalcpu\ns,-1\n")
    assert error.message == (
        "row 2, field 'totalcpu': must not be negative, got -1; nothing was written"
    )


def test_rejects_a_hostname_listed_twice_in_a_csv() -> None:
    data = "hostname,totalcpu\nserver-1,8\nserver-2,8\nserver-1,16\n"
    assert csv_errors(data) == [
        {"row": 4, "field": "hostname", "message": "'server-1' is listed twice (also row 2)"}
    ]


def test_a_csv_device_row_and_vm_row_may_share_a_hostname() -> None:
    batch = parse_csv_import("kind,hostname\nbaremetal,node\nvm,node\n")
    assert ([d.hostname for d in batch.devices], [v.hostname for v in batch.vms]) == (
        ["node"],
        ["node"],
    )


def test_rejects_an_infiniband_csv_row_whose_name_is_not_device_colon_port() -> None:
    data = "kind,name,device,port\ninfiniband,ib0,server-1,ib0\n"
    assert csv_errors(data) == [
        {
            "row": 2,
            "field": "name",
            "message": "must be '<device>:<port>' = 'server-1:ib0', got 'ib0'",
        }
    ]


def test_rejects_a_column_that_does_not_belong_to_the_rows_kind() -> None:
    data = "kind,name,hostname,totalcpu\nswitch,leaf-1,,8\n"
    assert where(csv_errors(data)) == [(None, 2, "totalcpu")]


def test_reports_every_bad_row_of_a_csv_at_once() -> None:
    data = (
        "kind,hostname,totalcpu,status\n"
        "baremetal,a,x,\n"  # row 2: not a number
        "rack,b,1,\n"  # row 3: unknown kind
        "baremetal,c,-1,allocated\n"  # row 4: two bad fields
        "baremetal,d,1,available,extra\n"  # row 5: one cell too many
        "baremetal,a,1,\n"  # row 6: fine on its own
    )
    assert where(csv_errors(data)) == [
        (None, 2, "totalcpu"),
        (None, 3, "kind"),
        (None, 5, "(row)"),
        (None, 4, "status"),
        (None, 4, "totalcpu"),
    ]


# --- properties -------------------------------------------------------------------------------

hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)


@st.composite
def fleets(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Device rows with distinct hostnames, as a user would write them."""
    names = draw(st.lists(hostnames, min_size=1, max_size=12, unique=True))
    return [
        {
            "hostname": name,
            "totalcpu": draw(st.integers(min_value=0, max_value=MAX_COUNT)),
            "gpuCount": draw(st.integers(min_value=0, max_value=8)),
            "gpuVendor": draw(st.sampled_from(["nvidia", "AMD", "Intel"])),
            "location": draw(st.sampled_from(["india", "us", "eu"])),
        }
        for name in names
    ]


def as_json(rows: list[dict[str, Any]]) -> str:
    devices = []
    for row in rows:
        gpus = [{"vendorCode": row["gpuVendor"], "modelNo": "m"} for _ in range(row["gpuCount"])]
        devices.append(
            {
                "hostname": row["hostname"],
                "totalcpu": row["totalcpu"],
                "gpus": gpus,
                "tags": {"location": row["location"]},
            }
        )
    return json.dumps({"devices": devices})


def as_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["hostname", "totalcpu", "gpuCount", "gpuVendor", "gpuModel", "tags.location"])
    for row in rows:
        writer.writerow(
            [
                row["hostname"],
                row["totalcpu"],
                row["gpuCount"],
                row["gpuVendor"],
                "m",
                row["location"],
            ]
        )
    return out.getvalue()


def facts(batch: ImportBatch) -> list[tuple[Any, ...]]:
    return [
        (
            d.hostname,
            d.facts["total_cpu"],
            d.facts["total_gpus"],
            {g.vendor_code for g in d.gpus},
            d.tags,
        )
        for d in batch.devices
    ]


def expected_facts(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (
            r["hostname"],
            r["totalcpu"],
            r["gpuCount"],
            {r["gpuVendor"].upper()} if r["gpuCount"] else set(),
            {"location": r["location"]},
        )
        for r in rows
    ]


@given(fleets())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_property_json_and_csv_of_the_same_fleet_parse_to_the_same_facts(
    rows: list[dict[str, Any]],
) -> None:
    from_json = parse_import("json", as_json(rows))
    from_csv = parse_import("csv", as_csv(rows))
    assert facts(from_json) == facts(from_csv) == expected_facts(rows)


@given(fleets(), st.data())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_property_a_repeated_hostname_is_reported_at_the_repeat_naming_the_first(
    rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    first = data.draw(st.integers(min_value=0, max_value=len(rows) - 1))
    at = data.draw(st.integers(min_value=first + 1, max_value=len(rows)))
    rows.insert(at, {**rows[first], "totalcpu": 1})
    name = rows[first]["hostname"]
    assert json_errors(json.loads(as_json(rows))) == [
        {
            "row": at + 1,
            "field": "hostname",
            "message": f"{name!r} is listed twice (also devices row {first + 1})",
            "section": "devices",
        }
    ]
    # In a CSV the header is row 1, so every data row is one further down.
    assert csv_errors(as_csv(rows)) == [
        {
            "row": at + 2,
            "field": "hostname",
            "message": f"{name!r} is listed twice (also row {first + 2})",
        }
    ]


@given(fleets(), st.data())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_property_one_non_numeric_csv_cell_fails_the_whole_upload_naming_its_cell(
    rows: list[dict[str, Any]], data: st.DataObject
) -> None:
    victim = data.draw(st.integers(min_value=0, max_value=len(rows) - 1))
    column = data.draw(st.sampled_from(["totalcpu", "gpuCount"]))
    rows[victim][column] = data.draw(st.sampled_from(["x", "1.5", "8 GPUs", "--1", "1e3"]))
    errors = csv_errors(as_csv(rows))
    assert [(e["row"], e["field"]) for e in errors] == [(victim + 2, column)]


def test_sections_map_to_the_kinds_of_the_design() -> None:
    assert SECTIONS == {
        "devices": Kind.BAREMETAL,
        "vms": Kind.VM,
        "switches": Kind.SWITCH,
        "infinibands": Kind.INFINIBAND,
    }
