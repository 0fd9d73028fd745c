"""Agents that misbehave, for the verifier's client to be refused by: a TCP server on
127.0.0.1 whose handler answers each connection as a test wants (silently, slowly, with
garbage, with someone else's evidence)."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from engine.attest import Evidence, QuoteBlob

BOUND = 30.0
"""Seconds after which a challenge still running counts as a hang (the deadlines under
test are one to five seconds: the margin keeps outcomes independent of the load)."""


class FakeAgent:
    """A TCP server on 127.0.0.1 that answers each connection with ``handler``."""

    def __init__(self, handler: Callable[[socket.socket], None]) -> None:
        self.handler = handler
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.disconnected = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.handler(conn)
            except OSError:
                self.disconnected.set()

    def read_request(self, conn: socket.socket) -> bytes:
        """The request's headers and its body (by Content-Length)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        return body

    def close(self) -> None:
        with suppress(OSError):  # wakes the thread blocked in accept()
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()


def start_fake_agent(handler: Callable[[FakeAgent, socket.socket], None]) -> FakeAgent:
    """A fake agent whose ``handler`` gets it and each connection; close it after."""
    holder: list[FakeAgent] = []
    agent = FakeAgent(lambda conn: handler(holder[0], conn))
    holder.append(agent)
    return agent


@contextmanager
def fake_agent(handler: Callable[[FakeAgent, socket.socket], None]) -> Iterator[FakeAgent]:
    agent = start_fake_agent(handler)
    try:
        yield agent
    finally:
        agent.close()


def evidence_json(nonce: bytes = bytes(range(32)), host_id: str = "hv-042") -> bytes:
    return Evidence(host_id=host_id, collected_at=dt.datetime(2026, 5, 1, tzinfo=dt.UTC),
                    nonce=nonce, ak_public=b"ak", quote=QuoteBlob(attest=b"a", signature=b"s"),
                    pcrs={"sha256": {0: bytes(32)}}).to_json()


def answer(body: bytes, *, status: str = "200 OK", media: str = "application/json",
           extra: str = "") -> Callable[[FakeAgent, socket.socket], None]:
    def handler(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: {media}\r\nContent-Length: "
                     f"{len(body)}\r\n{extra}Connection: close\r\n\r\n".encode() + body)
    return handler
