"""One shared HTTP client for light polling.

Creating an httpx client builds an SSL context (~50 ms of CPU); a poller that did that
for every probe would cost a steady share of a core. The shared client is thread-safe and
keeps connections to the backends alive between polls.
"""

from __future__ import annotations

import threading

import httpx

_lock = threading.Lock()
_client: httpx.Client | None = None


def shared_client() -> httpx.Client:
    global _client
    with _lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(limits=httpx.Limits(max_connections=16,
                                                        max_keepalive_connections=8),
                                   trust_env=False)
        return _client
