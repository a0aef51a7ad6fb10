"""Profiles: the two labels of seed 001, parsed and validated into typed filters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from api.domain.errors import BAD_PROFILE, DomainError
from api.domain.fields import MAX_AMOUNT, MAX_COUNT
from api.domain.limits import JsonInputError, json_problem, parse_json

INVENTORY_LABEL = "paas.envmgmt.io/inventory"
CONFIG_LABEL = "paas.envmgmt.io/inventory.config"


class InventoryType(StrEnum):
    BAREMETAL = "baremetal"
    VM = "vm"
    VCLUSTER = "vcluster"
    MKS = "mks"


# keyInCapacity spellings, compared case-insensitively (the seed writes both requiredCPU
# and requiredCpu), mapped to our requirement names.
CAPACITY_KEYS = {
    "requirednoofnodes": "nodes",
    "requiredcpu": "cpu",
    "requiredmemorymb": "memory_mb",
    "requiredgpu": "gpus",
    "requiredstoragegb": "storage_gb",
}
# How a requirement is shown back to users (the seed's own spelling).
CAPACITY_LABELS = {
    "nodes": "requiredNoofNodes",
    "cpu": "requiredCPU",
    "memory_mb": "requiredMemoryMB",
    "gpus": "requiredGPU",
    "storage_gb": "requiredStorageGB",
}


@dataclass(frozen=True)
class MatchFilter:
    index: int
    variable: str
    path: str
    required: bool = False


@dataclass(frozen=True)
class CapacityFilter:
    index: int
    variable: str
    key: str  # a requirement name ("gpus", ...) or, with presets, the name the profile gave
    presets: Mapping[str, Mapping[str, int]] | None = None  # preset -> {requirement: amount}
    required: bool = False


Filter = MatchFilter | CapacityFilter


@dataclass(frozen=True)
class Profile:
    inventory_type: InventoryType
    filters: tuple[Filter, ...]

    def canonical(self) -> dict[str, Any]:
        """A stable form of the resolved profile, used to tell "the same request" apart."""
        return {
            "inventoryType": self.inventory_type.value,
            "filters": [_filter_dict(f) for f in self.filters],
        }


def _filter_dict(f: Filter) -> dict[str, Any]:
    if isinstance(f, MatchFilter):
        return {
            "type": "match",
            "keyInVariable": f.variable,
            "keyInDevice": f.path,
            "required": f.required,
        }
    out: dict[str, Any] = {
        "type": "capacity",
        "keyInVariable": f.variable,
        "keyInCapacity": f.key,
        "required": f.required,
    }
    if f.presets is not None:
        out["capacityMap"] = {name: dict(amounts) for name, amounts in sorted(f.presets.items())}
    return out


def profile_error(message: str, index: int | None = None, field: str | None = None) -> DomainError:
    where = (
        f"filter {index}" + (f", field {field!r}" if field else "") + ": "
        if index is not None
        else (f"{field}: " if field else "")
    )
    extensions: dict[str, Any] = {}
    if index is not None:
        extensions["filterIndex"] = index
    if field is not None:
        extensions["field"] = field
    return DomainError(BAD_PROFILE, where + message, extensions)


def parse_labels(labels: Any) -> Profile:
    """Validate a profile's labels: the inventory type first, then the filters by index."""
    if not isinstance(labels, Mapping):
        raise profile_error(
            f"labels must be an object, got {type(labels).__name__}", field="labels"
        )
    # Labels are stored and echoed back as given, unknown ones too: hold all of them to
    # what a JSON column and a JSON response can carry.
    problem = json_problem(labels)
    if problem is not None:
        raise profile_error(problem, field="labels")
    raw_type = labels.get(INVENTORY_LABEL)
    try:
        inventory_type = InventoryType(str(raw_type).strip().lower())
    except ValueError:
        raise profile_error(
            f"unknown inventory type {raw_type!r} (one of: "
            f"{', '.join(t.value for t in InventoryType)})",
            field=INVENTORY_LABEL,
        ) from None
    config = labels.get(CONFIG_LABEL)
    if config is None:
        return Profile(inventory_type, ())
    if isinstance(config, str):
        try:
            config = parse_json(config)
        except json.JSONDecodeError as exc:
            raise profile_error(
                f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                field=CONFIG_LABEL,
            ) from None
        except JsonInputError as exc:
            raise profile_error(str(exc), field=CONFIG_LABEL) from None
    if not isinstance(config, list):
        raise profile_error("must be a JSON array of filters", field=CONFIG_LABEL)
    return Profile(inventory_type, tuple(_parse_filter(i, f) for i, f in enumerate(config)))


_MATCH_KEYS = {"type", "keyInVariable", "keyInDevice", "required"}
_CAPACITY_KEYS = {"type", "keyInVariable", "keyInCapacity", "capacityMap", "required"}


def _parse_filter(index: int, raw: Any) -> Filter:
    if not isinstance(raw, Mapping):
        raise profile_error(f"must be an object, got {type(raw).__name__}", index)
    kind = raw.get("type")
    if kind not in ("match", "capacity"):
        raise profile_error(f"unknown filter type {kind!r} (match or capacity)", index, "type")
    allowed = _MATCH_KEYS if kind == "match" else _CAPACITY_KEYS
    for key in raw:
        if key not in allowed:
            raise profile_error(
                f"unknown field {key!r} in a {kind} filter (known: {', '.join(sorted(allowed))})",
                index,
                str(key),
            )
    variable = _text(raw, "keyInVariable", index)
    required = raw.get("required", False)
    if not isinstance(required, bool):
        raise profile_error(f"must be true or false, got {required!r}", index, "required")
    if kind == "match":
        path = _text(raw, "keyInDevice", index)
        if any(not step for step in path.split(".")):
            raise profile_error(f"{path!r} is not a dotted path", index, "keyInDevice")
        return MatchFilter(index, variable, path, required)
    key = _text(raw, "keyInCapacity", index)
    presets_raw = raw.get("capacityMap")
    if presets_raw is None:
        canonical = CAPACITY_KEYS.get(key.lower())
        if canonical is None:
            raise profile_error(
                f"unknown capacity {key!r} (one of: "
                f"{', '.join(CAPACITY_LABELS.values())}; or give a "
                "capacityMap)",
                index,
                "keyInCapacity",
            )
        return CapacityFilter(index, variable, canonical, None, required)
    return CapacityFilter(index, variable, key, _presets(index, presets_raw), required)


def _presets(index: int, raw: Any) -> dict[str, dict[str, int]]:
    if not isinstance(raw, Mapping) or not raw:
        raise profile_error(
            'must be an object of presets, e.g. {"small": {"requiredCpu": 2}}', index, "capacityMap"
        )
    presets: dict[str, dict[str, int]] = {}
    for name, amounts in raw.items():
        field = f"capacityMap.{name}"
        if not isinstance(amounts, Mapping) or not amounts:
            raise profile_error("a preset must name at least one required amount", index, field)
        parsed: dict[str, int] = {}
        for key, amount in amounts.items():
            canonical = CAPACITY_KEYS.get(str(key).lower())
            if canonical is None:
                raise profile_error(
                    f"unknown capacity {key!r} (one of: {', '.join(CAPACITY_LABELS.values())})",
                    index,
                    f"{field}.{key}",
                )
            maximum = MAX_COUNT if canonical == "nodes" else MAX_AMOUNT
            if (
                isinstance(amount, bool)
                or not isinstance(amount, int | float)
                or not 0 <= amount <= maximum
                or (isinstance(amount, float) and not amount.is_integer())
            ):
                raise profile_error(
                    f"must be a whole number from 0 to {maximum}, got {amount!r}",
                    index,
                    f"{field}.{key}",
                )
            parsed[canonical] = int(amount)
        if parsed.get("nodes", 1) < 1:
            raise profile_error(
                "requiredNoofNodes must be at least 1", index, f"{field}.requiredNoofNodes"
            )
        presets[str(name)] = parsed
    return presets


def _text(raw: Mapping[str, Any], key: str, index: int) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise profile_error("is required and must be a non-empty string", index, key)
    return value.strip()
