"""What the provision request tests share: a baremetal profile that asks for free GPUs,
an 8-GPU H100 server, and one queue round at a time the test chooses (the shared test
server runs no rounds of its own: tests/conftest.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.db import request_queue
from api.db.base import utcnow
from api.db.candidates import LiveIndex


def capacity_labels(key: str = "gpu", capacity: str = "requiredGPU") -> dict[str, str]:
    """A baremetal profile's labels: at least the ``key`` variable's value of ``capacity``."""
    config = [{"type": "capacity", "keyInVariable": key, "keyInCapacity": capacity}]
    return {
        "paas.envmgmt.io/inventory": "baremetal",
        "paas.envmgmt.io/inventory.config": json.dumps(config),
    }


def gpu_ask(environment: str, gpus: int = 8, **extra: Any) -> dict[str, Any]:
    """A matchDevice or requestDevices input for ``gpus`` free GPUs of one node under
    capacity_labels(); ``extra`` adds fields or overrides these."""
    return {
        "environment": environment,
        "labels": capacity_labels(),
        "variables": {"gpu": str(gpus)},
        **extra,
    }


def h100_server(hostname: str) -> dict[str, Any]:
    """A pool server (no tenant) of 8 H100 GPUs, as importInventory takes it."""
    gpus = [{"vendorCode": "NVIDIA", "modelNo": "H100"}] * 8
    return {"hostname": hostname, "totalcpu": 64, "totalmemoryMB": 262144, "gpus": gpus}


def serve_round(
    sessions: sessionmaker[Session],
    after: timedelta = timedelta(0),
    live: LiveIndex | None = None,
    **policy: Any,
) -> request_queue.Round:
    """One queue round, ``after`` from now, under the default policy unless ``policy``
    says otherwise (grace, backfill_window, approval_ttl)."""
    queue_policy = request_queue.QueuePolicy(**policy)
    return request_queue.serve(sessions, live or LiveIndex(), queue_policy, utcnow() + after)
