"""nginx's stub_status: the requests in flight right now, which the access log cannot show.

nginx writes an access-log line only when a request ends, so a hung backend's requests are
invisible there until they time out. `Writing` (requests whose response nginx is still
producing) counts them while they wait.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from vrm_tui.system import loophttp

PATH = "/nginx_status"
_NUMBERS = re.compile(r"\d+")


@dataclass(frozen=True)
class StubStatus:
    active: int
    accepts: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int

    @property
    def in_flight(self) -> int:
        """Client requests waiting for a response, not counting the status request itself."""
        return max(0, self.writing - 1)


def parse(text: str) -> StubStatus:
    """The stub_status page as numbers; ValueError when it is not one."""
    numbers = [int(n) for n in _NUMBERS.findall(text)]
    if len(numbers) != 7 or "Writing" not in text:
        raise ValueError(f"not an nginx stub_status page: {text[:80]!r}")
    return StubStatus(*numbers)


def read(url: str, timeout: float = 0.5) -> StubStatus:
    """GET the status page on nginx's loopback status listener (polled every second: a
    plain socket, not an HTTP client library). OSError or ValueError when it fails."""
    where = urlsplit(url)
    if where.scheme != "http" or where.hostname is None or where.port is None:
        raise ValueError(f"{url!r}: expected http://HOST:PORT/PATH")
    status, body = loophttp.request(where.hostname, where.port, "GET", where.path or "/",
                                    timeout=timeout)
    if status != 200:
        raise ValueError(f"{url} answered HTTP {status}")
    return parse(body.decode("latin-1"))
