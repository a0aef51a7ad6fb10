"""Argument kinds that more than one gpuinv type takes: a bool or number whose omission
means a default, and a whole number checked at plan time.

The `tf` framework compares an argument's old and new values with its type's
``semantically_equal`` to decide whether a change forces replacement, so a type that knows
its default makes "left out" and "written as the default" one request, as the API reads it.
"""

from __future__ import annotations

from typing import Any

from tf import types
from tf.iface import Config
from tf.provider import Diagnostics
from tf.types import Unknown


class Defaulted(types.TfType):
    """``kind`` whose null means ``default``: `preemptible = false` and no `preemptible`
    are the same request, so going from one to the other replaces nothing."""

    def __init__(self, kind: types.TfType, default: Any):
        self.kind, self.default = kind, default

    def encode(self, value: Any) -> Any:
        return self.kind.encode(value)

    def decode(self, value: Any) -> Any:
        return self.kind.decode(value)

    def tf_type(self) -> bytes:
        pattern: bytes = self.kind.tf_type()
        return pattern

    def value(self, given: Any) -> Any:
        """What the argument means: the default when it is left out."""
        return self.default if given is None else given

    def semantically_equal(self, a_decoded: Any, b_decoded: Any) -> bool:
        if a_decoded is Unknown or b_decoded is Unknown:
            return a_decoded is b_decoded
        return bool(self.value(a_decoded) == self.value(b_decoded))


def check_whole_number(
    diags: Diagnostics, config: Config, name: str, minimum: int | None = None
) -> None:
    """A number argument that the API takes as an Int: said at plan time, with the
    attribute, when it has a fraction or is below ``minimum``."""
    value = config.get(name)
    if value is None or value is Unknown:
        return
    if isinstance(value, bool) or not float(value).is_integer():
        diags.add_error(f"gpuinv: {name} must be a whole number, got {value}", path=[name])
    elif minimum is not None and value < minimum:
        diags.add_error(f"gpuinv: {name} must be at least {minimum}, got {int(value)}", path=[name])


def whole(value: Any) -> int | None:
    """A whole-number argument as the API's Int (Terraform may hand it over as a float)."""
    return None if value is None else int(value)
