"""Which NetBox objects become which inventory items: defaults overridable by a mapping file
(YAML; JSON is valid YAML). Documented in sync/README.md, every key with its default in
sync/mapping.example.yaml (a test checks that it loads to ``Mapping()``).

The defaults follow how NetBox is usually kept, so a plain NetBox syncs with no file. A
file changes only the keys it names; anything it misspells is refused by name, because a
silently ignored key would sync the wrong devices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml


class MappingError(ValueError):
    """A mapping file that cannot be used; the message names the key and the value."""


@dataclass(frozen=True)
class Mapping:
    device_roles: tuple[str, ...] = ("gpu-server",)
    switch_roles: tuple[str, ...] = ("switch", "leaf", "spine", "ib-switch")
    cpu_field: str = "cpu_cores"
    memory_field: str = "memory_mb"
    storage_field: str = "storage_gb"


_SECTIONS = {
    "devices": {"roles": "device_roles"},
    "switches": {"roles": "switch_roles"},
    "custom_fields": {
        "cpu": "cpu_field",
        "memory_mb": "memory_field",
        "storage_gb": "storage_field",
    },
}


def parse_mapping(text: str, origin: str = "mapping file") -> Mapping:
    """The defaults with the file's keys merged over them."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{origin}: not valid YAML: {exc}") from exc
    if raw is None:
        return Mapping()
    if not isinstance(raw, dict):
        raise MappingError(f"{origin}: must be a mapping of sections, got {type(raw).__name__}")
    changes: dict[str, Any] = {}
    for section, body in raw.items():
        keys = _SECTIONS.get(section)
        if keys is None:
            raise MappingError(
                f"{origin}: unknown section {section!r}; known: {', '.join(_SECTIONS)}"
            )
        if not isinstance(body, dict):
            raise MappingError(f"{origin}: {section}: must be a mapping, got {body!r}")
        for key, value in body.items():
            attribute = keys.get(key)
            if attribute is None:
                raise MappingError(
                    f"{origin}: {section}.{key}: unknown key; known: {', '.join(keys)}"
                )
            changes[attribute] = _value(f"{origin}: {section}.{key}", key, value)
    mapping = replace(Mapping(), **changes)
    overlap = set(mapping.device_roles) & set(mapping.switch_roles)
    if overlap:
        raise MappingError(
            f"{origin}: role(s) {', '.join(sorted(overlap))} are listed for both devices "
            "and switches"
        )
    return mapping


def load_mapping(path: str | Path | None, named_by: str | None = None) -> Mapping:
    """The mapping file at ``path`` over the defaults; the defaults when ``path`` is empty.
    Every refusal is a MappingError naming the file (after ``named_by``, e.g. the variable
    that named it), so `gpuinv sync` and the service's webhook read a file the same way."""
    if not path:
        return Mapping()
    origin = f"{named_by}: {path}" if named_by else str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise MappingError(f"{origin}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise MappingError(f"{origin}: not a text file (UTF-8)") from None
    return parse_mapping(text, origin)


def _value(where: str, key: str, value: Any) -> Any:
    if key == "roles":
        if isinstance(value, str):
            value = [value]
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and v.strip() for v in value)
        ):
            raise MappingError(f"{where}: must be a non-empty list of role slugs, got {value!r}")
        return tuple(v.strip() for v in value)
    if not isinstance(value, str) or not value.strip():
        raise MappingError(f"{where}: must be a custom field name, got {value!r}")
    return value.strip()
