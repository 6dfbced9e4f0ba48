"""One HTTP request to a listener vrm owns on loopback (nginx's status listener), on a fresh
connection.

Not `http.client`: importing it (and `email`, `ssl` behind it) costs a `vrm rollback` about
15 ms before it can act, and the status listener needs none of it. HTTP/1.0 keeps the answer
unchunked and the connection closed by nginx, so the body is everything after the headers.
"""

from __future__ import annotations

import socket
import time

MAX_ANSWER_BYTES = 1 << 20


class LoopError(OSError):
    """No well-formed answer: refused, timed out, cut short, or not HTTP."""


def request(host: str, port: int, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None, timeout: float = 1.0) -> tuple[int, bytes]:
    """Send one request; return (status, body). `timeout` bounds the whole exchange."""
    deadline = time.monotonic() + timeout
    lines = [f"{method} {path} HTTP/1.0", f"Host: {host}:{port}", "Connection: close",
             f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    chunks: list[bytes] = []
    size = 0
    # bytes: a str host goes through the idna codec (another import) on the way to the resolver
    family, kind, proto, _, where = socket.getaddrinfo(host.encode("ascii", "replace"), port,
                                                       type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout)
        sock.connect(where)
        sock.sendall(data)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoopError(f"timed out after {timeout:g}s")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise LoopError(f"timed out after {timeout:g}s") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise LoopError(f"answer longer than {MAX_ANSWER_BYTES} bytes")
    return parse_answer(b"".join(chunks))


def parse_answer(answer: bytes) -> tuple[int, bytes]:
    """(status, body) of a whole HTTP/1.x answer read to the end of the connection."""
    head, sep, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split(None, 2)
    if not sep or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1.") \
            or not status_line[1].isdigit():
        raise LoopError(f"not an HTTP answer: {answer[:60]!r}")
    return int(status_line[1]), body
