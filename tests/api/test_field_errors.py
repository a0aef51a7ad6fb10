"""A refused field is a typed InvalidField (api/domain/errors.py), not ValueError(field,
message): a ValueError from anywhere else (a library, a bug) must read as the bug it is,
never as BAD_INPUT naming whatever its first argument happens to be."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api.db import device as device_db
from tests.support.api import Api
from tests.support.fleet import server

CREATE = "mutation($input: DeviceInput!) { createDevice(input: $input) { id } }"
H100 = {
    "hostname": "server-42",
    "totalCpu": 224,
    "gpus": [{"vendorCode": "NVIDIA", "modelNo": "H100"}],
}
DEVICE_COUNT = "{ devices { totalCount } }"
IMPORT = """mutation($d: String!) {
  importInventory(format: JSON, data: $d) { created updated } }"""


def _raise_value_error(*_args: Any, **_kwargs: Any) -> None:
    # Fault injection, said so: no input makes our code raise this. It is the shape a
    # library's ValueError can take (two arguments), which the old protocol unpacked as
    # (field, message).
    raise ValueError("tenant", "words from somewhere else")


def test_a_refused_field_names_the_field(api: Api) -> None:
    error = api.error(CREATE, input=dict(H100, tenant="nobody"))
    assert error["extensions"] == {"code": "BAD_INPUT", "field": "tenant"}
    assert error["message"] == "tenant: tenant 'nobody' not found"


@pytest.mark.parametrize("where", ["single create", "bulk import"])
def test_a_stray_value_error_is_an_internal_error_and_writes_nothing(
    api: Api, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A single create, and an import that updates a device (its rows go through the
    same write as the create, inside the import's per-row error handling)."""
    if where == "single create":
        monkeypatch.setattr(device_db, "write_spec", _raise_value_error)
        body = api.run(CREATE, input=H100)
        expected_devices = 0
    else:
        first = api.run(IMPORT, d=json.dumps({"devices": [server("gpu-1")]}))
        assert first["data"]["importInventory"] == {"created": 1, "updated": 0}, first
        monkeypatch.setattr(device_db, "write_spec", _raise_value_error)
        body = api.run(IMPORT, d=json.dumps({"devices": [server("gpu-1", rack="r9")]}))
        expected_devices = 1
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "words from somewhere else" not in error["message"]
    assert api.ok(DEVICE_COUNT)["devices"]["totalCount"] == expected_devices
