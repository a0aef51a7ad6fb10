"""A load generator's HTTP client: one keep-alive socket, requests written as prepared
bytes, answers read by their Content-Length.

httpx spends about 0.6 ms of CPU on each claim's request and answer; on the 2-core
machines the claim benchmark runs on, that is a sixth of what the server, PostgreSQL and
the client share, and it is taken from the server. Tools that measure HTTP servers (wrk,
oha) keep their own cost small for that reason. This client does what those do and no
more: HTTP/1.1 to one server that answers every request with a Content-Length (uvicorn
does), no redirects, TLS, chunking or proxies. bench.claims reports its figures beside
httpx's (``--client``), never instead of them.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

from bench.graphql import Answer, answer_of
from bench.service import BenchError


class SocketClient:
    """Same ``send``/``close`` as bench.graphql.GraphQLClient."""

    def __init__(self, base_url: str, token: str, timeout: float = 1800.0):
        parts = urlsplit(base_url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.timeout = timeout
        self.head = (
            f"POST /graphql HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        ).encode()
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, body: bytes) -> Answer:
        """One request, timed from send to the body fully read."""
        request = self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        started = time.perf_counter()
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request)
        status, content = self._read_answer()
        return answer_of(time.perf_counter() - started, status, content)

    def _read_answer(self) -> tuple[int, bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._receive()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise BenchError(f"an answer without Content-Length: {head[:300]!r}")
        while len(self.buffer) < length:
            self._receive()
        content, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, content

    def _receive(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(262144)
        if not chunk:
            raise BenchError("the server closed the connection")
        self.buffer += chunk
