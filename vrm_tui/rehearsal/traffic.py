"""Light synthetic traffic through the proxy, so a demo's panes move."""

from __future__ import annotations

import http.client
import json
import random
import threading
from urllib.parse import urlsplit

MODELS = ("resnet50", "yolov8", "clip-vit-l", "detr", "sam-vit-h")


class SyntheticTraffic:
    """A daemon thread sending about `rate` requests a second: mostly vision tasks."""

    def __init__(self, proxy_url: str, rate: float = 15.0, seed: int | None = None) -> None:
        parts = urlsplit(proxy_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
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
        while not self._stop.wait(self.rng.expovariate(self.rate)):
            self._one()

    def _one(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            if self.rng.random() < 0.7:
                side = self.rng.choice((320, 640, 1024))
                body = json.dumps({"model": self.rng.choices(MODELS, (5, 5, 3, 2, 1))[0],
                                   "image_size": [side, side]})
                conn.request("POST", "/api/v1/vision/process", body,
                             {"Content-Type": "application/json"})
            else:
                conn.request("GET", "/api/v1/vision/metrics")
            conn.getresponse().read()
            self.sent += 1
        except (OSError, http.client.HTTPException):
            pass  # the demo's panes show failures; the generator just carries on
        finally:
            conn.close()
