"""GPU and link health: conditions a monitoring agent reports on a server, one of its GPUs
or one of its InfiniBand ports.

A server with any condition is unhealthy: matching skips it and capacity does not count it
as allocatable, whatever its status. A condition never frees an allocation: a user's job
may still be running on the other GPUs, so an allocated server that turns unhealthy
raises an alert (audit log and metric) for an operator to decide. Conditions are kept on
the server's row, so that a condition on a port or a GPU reaches matching through the same
change feed as any other change of the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from api.domain.errors import bad_input


class HealthCode(StrEnum):
    XID = "xid"  # an NVIDIA Xid error (driver-reported GPU fault)
    ECC = "ecc"  # uncorrectable memory errors, or retired pages over the limit
    THERMAL = "thermal"  # over temperature, or throttling
    GPU_LOST = "gpu-lost"  # fell off the bus
    LINK_DOWN = "link-down"  # an InfiniBand port is down
    LINK_DEGRADED = "link-degraded"  # up, but below its rate or with symbol errors
    OTHER = "other"


MAX_MESSAGE = 500


@dataclass(frozen=True)
class Condition:
    code: HealthCode
    message: str | None
    gpu_index: int | None  # the GPU it concerns, if one
    port: str | None  # the InfiniBand port it concerns, if one
    since: datetime
    reported_by: str

    @property
    def key(self) -> tuple[str, int | None, str | None]:
        """One condition per code and place: a repeated report refreshes, not duplicates."""
        return (self.code.value, self.gpu_index, self.port)

    def stored(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "message": self.message,
            "gpuIndex": self.gpu_index,
            "port": self.port,
            "since": self.since.isoformat(),
            "reportedBy": self.reported_by,
        }


def condition(
    code: HealthCode,
    message: str | None,
    gpu_index: int | None,
    port: str | None,
    total_gpus: int,
    since: datetime,
    reported_by: str,
) -> Condition:
    """A checked condition: the GPU index must be one of the server's GPUs."""
    if gpu_index is not None and not 0 <= gpu_index < total_gpus:
        raise bad_input(
            f"gpuIndex: the server has {total_gpus} GPU(s) (0..{total_gpus - 1}), got {gpu_index}"
            if total_gpus
            else f"gpuIndex: the server has no GPUs, got {gpu_index}",
            field="gpuIndex",
        )
    if message is not None and len(message) > MAX_MESSAGE:
        raise bad_input(
            f"message: at most {MAX_MESSAGE} characters, got {len(message)}", field="message"
        )
    return Condition(code, message or None, gpu_index, port, since, reported_by)


def reported(current: list[dict[str, Any]] | None, new: Condition) -> list[dict[str, Any]]:
    """The server's conditions with ``new`` added, or refreshed if already there (keeping
    when it started)."""
    kept, since = [], new.since.isoformat()
    for entry in current or []:
        if _key(entry) == new.key:
            since = entry["since"]
        else:
            kept.append(entry)
    return [*kept, new.stored() | {"since": since}]


def cleared(
    current: list[dict[str, Any]] | None, code: HealthCode | None, port: str | None
) -> list[dict[str, Any]] | None:
    """The conditions left after clearing ``code`` (all codes if None), of ``port`` if
    given (else of the server and its GPUs and ports alike). None when none are left."""
    left = [
        entry
        for entry in current or []
        if not (
            (code is None or entry["code"] == code.value)
            and (port is None or entry.get("port") == port)
        )
    ]
    return left or None


def _key(entry: dict[str, Any]) -> tuple[str, int | None, str | None]:
    return (entry["code"], entry.get("gpuIndex"), entry.get("port"))
