"""The loopback HTTP client behind /vrm/served and /vrm/split, against real sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from vrm_tui.system import loophttp


@contextlib.contextmanager
def _server(answer: Callable[[socket.socket, bytes], None]) -> Iterator[int]:
    """A one-connection-at-a-time server on a free loopback port; `answer` gets each request."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length:")), b"0"))
                while len(body) < length:
                    body += conn.recv(4096)
                with contextlib.suppress(OSError):  # the client gave up first: some tests
                    answer(conn, data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def test_a_request_and_its_answer() -> None:
    seen: list[bytes] = []

    def answer(conn: socket.socket, request: bytes) -> None:
        seen.append(request)
        conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{\"a\": 1}")

    with _server(answer) as port:
        status, body = loophttp.request("127.0.0.1", port, "POST", "/vrm/split", b'{"rust": 0}',
                                        {"Content-Type": "application/json"})
    assert (status, body) == (201, b'{"a": 1}')
    assert seen[0].startswith(b"POST /vrm/split HTTP/1.0\r\n")
    assert b"Content-Length: 11\r\n" in seen[0] and seen[0].endswith(b'{"rust": 0}')


def test_a_listener_that_never_answers_times_out_within_the_timeout() -> None:
    with _server(lambda conn, request: time.sleep(1.5)) as port:
        started = time.monotonic()
        with pytest.raises(OSError):
            loophttp.request("127.0.0.1", port, "GET", "/vrm/served", timeout=0.3)
        assert time.monotonic() - started < 1.0


def test_a_slow_trickle_cannot_stretch_the_timeout() -> None:
    def trickle(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(20):
            time.sleep(0.05)
            conn.sendall(b"X-Pad: 1\r\n")

    with _server(trickle) as port:
        started = time.monotonic()
        with pytest.raises(loophttp.LoopError, match="timed out"):
            loophttp.request("127.0.0.1", port, "GET", "/", timeout=0.3)
        assert time.monotonic() - started < 0.8


@pytest.mark.parametrize("raw", [b"", b"SSH-2.0-OpenSSH\r\n", b"HTTP/1.1 200 OK\r\nX: y",
                                 b"HTTP/1.1 abc OK\r\n\r\n"])
def test_what_is_not_an_http_answer_is_an_error(raw: bytes) -> None:
    with pytest.raises(loophttp.LoopError, match="not an HTTP answer"):
        loophttp.parse_answer(raw)


def test_a_refused_connection_is_an_oserror() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OSError):
        loophttp.request("127.0.0.1", port, "GET", "/")
