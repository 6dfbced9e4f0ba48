"""Light synthetic traffic through the proxy, so a demo's panes move: the deployment's own
request corpus (VRM_REQUESTS), drawn by weight, never a request its backends may not serve."""

from __future__ import annotations

import http.client
import random
import threading
from urllib.parse import urlsplit

from vrm_tui.core.corpus import Corpus, Request


class SyntheticTraffic:
    """A daemon thread sending about `rate` requests a second, drawn from `corpus`."""

    def __init__(self, proxy_url: str, corpus: Corpus, rate: float = 15.0,
                 seed: int | None = None) -> None:
        parts = urlsplit(proxy_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.corpus = corpus
        self.rate = rate
        self.rng = random.Random(seed)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="vrm-demo-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        requests = self.corpus.requests
        weights = [r.weight for r in requests]
        while not self._stop.wait(self.rng.expovariate(self.rate)):
            self._one(self.rng.choices(requests, weights)[0])

    def _one(self, request: Request) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request(request.method, request.path, request.body or None,
                         dict(request.headers))
            conn.getresponse().read()
            self.sent += 1
        except (OSError, http.client.HTTPException):
            pass  # the demo's panes show failures; the generator just carries on
        finally:
            conn.close()
