"""A minimal HTTP/1.1 client for load generation: asyncio protocols and httptools' C parser.

Measured on the project's 2-core machine against nginx's static /vrm/ping on one core:
aiohttp's client peaks near 11k requests/s, this one well above 15k (tests/perf). It does
only what a load generator needs: one request at a time per connection, keep-alive when the
server allows it, Content-Length or chunked bodies, http and https.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httptools

from vrm_tui.core.errors import RequestFailed


@dataclass(frozen=True)
class Response:
    status: int
    backend: str | None


@dataclass(frozen=True)
class Endpoint:
    """A prepared request: where to connect and the exact bytes to send."""

    host: str
    port: int
    tls: bool
    payload: bytes

    @classmethod
    def build(cls, url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Endpoint:
        headers = (("Content-Type", "application/json"),) if body is not None or method in (
            "POST", "PUT", "PATCH") else ()
        content = json.dumps(body).encode() if body is not None else b""
        return cls.raw(url, method, headers, content)

    @classmethod
    def raw(cls, url: str, method: str, headers: tuple[tuple[str, str], ...],
            content: bytes) -> Endpoint:
        """Any method, headers and body bytes (a corpus request)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r}: expected an http:// or https:// URL")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}"]
        if not any(k.lower() == "accept" for k, _ in headers):
            head.append("Accept: */*")
        head += [f"{k}: {v}" for k, v in headers]
        if content or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(content)}")
        return cls(parts.hostname, port, tls, ("\r\n".join(head) + "\r\n\r\n").encode() + content)


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `request()` sends the payload and awaits the response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.backend: str | None = None
        self.closed = False
        self.reusable = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RequestFailed("bad-response", str(exc)))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RequestFailed("disconnected", str(exc or "closed by the server")))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 13 and name.lower() == b"x-vrm-backend":
            self.backend = value.decode()

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(Response(self.parser.get_status_code(), self.backend))

    # use
    def _fail(self, error: RequestFailed) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    async def request(self, payload: bytes, timeout: float) -> Response:
        assert self.transport is not None
        self.backend = None
        self.waiter = self.loop.create_future()
        timer = self.loop.call_later(timeout, self._fail, RequestFailed("timeout"))
        self.transport.write(payload)
        try:
            return await self.waiter
        finally:
            timer.cancel()
            self.waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Idle keep-alive connections to one endpoint; new ones are opened as needed."""

    def __init__(self, endpoint: Endpoint, timeout: float,
                 payloads: Sequence[bytes] = ()) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        # A corpus: requests sent in turn (a weighted schedule); else the endpoint's one.
        self.payloads = list(payloads) or [endpoint.payload]
        self.turn = 0
        self.idle: deque[_Connection] = deque()
        self.ssl = ssl.create_default_context() if endpoint.tls else None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                lambda: _Connection(loop), self.endpoint.host, self.endpoint.port,
                ssl=self.ssl), self.timeout)
        except TimeoutError:
            raise RequestFailed("connect", "timed out") from None
        except OSError as exc:
            raise RequestFailed("connect", exc.strerror or str(exc)) from None
        return conn

    async def send(self) -> Response:
        conn = None
        while self.idle:
            candidate = self.idle.pop()
            if not candidate.closed:
                conn = candidate
                break
        if conn is None:
            conn = await self._connect()
        try:
            payload = self.payloads[self.turn % len(self.payloads)]
            self.turn += 1
            response = await conn.request(payload, self.timeout)
        except RequestFailed:
            conn.close()
            raise
        if conn.reusable and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()
        return response

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
