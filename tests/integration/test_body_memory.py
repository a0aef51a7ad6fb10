"""A huge chunked body costs ``gpuinv serve`` no memory: it is counted as it arrives and
refused at the limit (issue 12: a 300 MiB chunked body without a token took the server from
105 to 706 MB). The server's peak resident set is read from /proc around each request.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import serving, token

MiB = 1024 * 1024
SENT = 256 * MiB


def _chunks(total: int) -> Iterator[bytes]:
    """Chunked transfer encoding (no Content-Length): a JSON string that never ends."""
    yield b'{"query": "{ __typename }", "variables": {"padding": "'
    chunk = b"x" * MiB
    for _ in range(total // MiB):
        yield chunk


def _pid_serving(base: str) -> int:
    """The ``gpuinv serve --port N`` process (one worker: uvicorn serves in it)."""
    port = base.rsplit(":", 1)[1]
    for status in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = status.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and port.encode() in argv:
            return int(status.parent.name)
    raise AssertionError(f"no gpuinv serve process on port {port}")


class PeakMemory:
    """The peak resident set (VmHWM) of a process, reset between measurements."""

    def __init__(self, pid: int):
        self.pid = pid

    def reset(self) -> None:
        # "5" resets the peak to the current resident set (proc(5), clear_refs)
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def field_mib(self, name: str) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no {name} in /proc/{self.pid}/status")

    def growth_while(self, send) -> tuple[httpx.Response, float, float]:
        self.reset()
        before = self.field_mib("VmRSS")
        response = send()
        return response, before, self.field_mib("VmHWM") - before


@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "token"])
def test_a_huge_chunked_body_is_refused_without_growing_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_token: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'memory.db'}"
    monkeypatch.setenv("GPUINV_MAX_BODY_BYTES", str(16 * MiB))
    with serving(url, tmp_path) as (base, _):
        headers = {"Content-Type": "application/json"}
        if with_token:
            headers["Authorization"] = f"Bearer {token(url, tmp_path)}"
        memory = PeakMemory(_pid_serving(base))
        with httpx.Client(base_url=base, timeout=120) as client:
            assert client.post("/graphql", json={"query": "{ __typename }"}).status_code == 200
            response, before, growth = memory.growth_while(
                lambda: client.post("/graphql", content=_chunks(SENT), headers=headers)
            )
            follow = client.post("/graphql", json={"query": "{ __typename }"})
        limit = 16 * MiB if with_token else 64 * 1024
        print(
            f"\n{'token' if with_token else 'anonymous'}: {SENT // MiB} MiB chunked, limit "
            f"{limit} bytes -> HTTP {response.status_code}; server {before:.0f} MiB, peak "
            f"+{growth:.1f} MiB"
        )
        assert response.status_code == 413, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"
        assert str(limit) in response.json()["errors"][0]["message"]
        assert growth < limit / MiB + 32, f"the server grew by {growth:.0f} MiB"
        assert follow.status_code == 200  # and the connection still serves
