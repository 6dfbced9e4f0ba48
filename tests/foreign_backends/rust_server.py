"""A backend vrm did not write, standing in for the team's Rust one: Python's stdlib
`http.server`, no framework, no X-VRM-* header, and none of vrm's code.

It answers what typescript_server.js answers, in its own dialect: `+00:00` instead of `Z` in
its whole-millisecond clock, a hex request id instead of a uuid, its own uptime and counters,
keys in another order. Modes (POST /_mode {"mode": ...}) as in typescript_server.js, and the
faults: err30 / err100 (30% / every API answer a 500; /health stays ok), slow (every answer
2 s late), hang (no answer at all, /health included: a stuck process), accel (every answer
carries `X-Accel-Redirect`, which a default nginx follows as an internal redirect).
Usage: python rust_server.py PORT   (prints "listening PORT" once bound)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LABELS = ("cat", "dog", "bus")
MODES = {"ok", "diverge5", "diverge-field", "err30", "err100", "slow", "hang", "accel"}
HANG_S = 600.0
STARTED = time.monotonic()
state: dict[str, Any] = {"mode": "ok", "tasks_total": 0, "processed": 0}
lock = threading.Lock()


def common() -> dict[str, Any]:
    now = datetime.now(UTC)
    if state["mode"] == "diverge-field":
        now -= timedelta(hours=1)
    return {"served_at": now.isoformat(timespec="milliseconds"),
            "uptime_s": int(time.monotonic() - STARTED), "request_id": uuid.uuid4().hex}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send(self, status: int, body: dict[str, Any]) -> None:
        text = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        if state["mode"] == "accel":
            self.send_header("X-Accel-Redirect", "/vrm/ping")
        self.end_headers()
        self.wfile.write(text)

    def do_GET(self) -> None:
        self.route("GET", b"")

    def do_POST(self) -> None:
        self.route("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def route(self, method: str, raw: bytes) -> None:
        started = time.perf_counter()
        route = f"{method} {self.path.split('?', 1)[0]}"
        if route == "POST /_mode":
            wanted = json.loads(raw or b"{}").get("mode")
            if wanted not in MODES:
                return self.send(400, {"error": f"mode {wanted}"})
            with lock:
                state.update(mode=wanted, processed=0)
            return self.send(200, {"mode": wanted})
        mode = state["mode"]
        if mode == "hang":
            time.sleep(HANG_S)  # a daemon thread: the server stops without waiting for it
            return None
        if mode == "slow":
            time.sleep(2.0)
        if route.split(" ", 1)[1].startswith("/api/") and mode in ("err30", "err100"):
            with lock:
                state["errors_seen"] = state.get("errors_seen", 0) + 1
                nth = state["errors_seen"]
            if mode == "err100" or nth % 10 < 3:
                return self.send(500, {**common(), "error": "internal error"})
        if route == "GET /health":
            return self.send(200, {**common(), "status": "ok"})
        if route == "GET /api/v1/vision/metrics":
            return self.send(200, {**common(), "tasks_total": state["tasks_total"],
                                   "models": ["resnet50", "yolov8"], "status": "ok"})
        if route == "GET /api/v1/vision/models":
            return self.send(200, {**common(), "models": [
                {"name": "resnet50", "classes": 1000}, {"name": "yolov8", "classes": 80}]})
        if route == "POST /api/v1/vision/process":
            try:
                request = json.loads(raw)
            except ValueError:
                return self.send(400, {"error": "not json"})
            with lock:
                state["tasks_total"] += 1
                state["processed"] += 1
                nth = state["processed"]
            digest = hashlib.sha256(raw).digest()
            label = LABELS[digest[0] % 3]
            if state["mode"] == "diverge5" and nth % 20 == 0:
                label = "zebra"
            return self.send(200, {
                "result": {"confidence": (50 + digest[1] % 50) / 100, "label": label},
                "model": request.get("model", "resnet50"), **common(),
                "processing_ms": int(1000 * (time.perf_counter() - started))})
        return self.send(404, {"error": "not found"})


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print(f"listening {server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
