"""Benchmark: what vrm's rendered nginx costs per request, beside a plain nginx.

Both proxies stand in front of the same static backends (a stock nginx answering
`return 200` on two ports, so the backends are never the bottleneck) and are measured
alternately with wrk (-t1 -c32, keep-alive), three rounds each, median reported:
- vrm: the config vrm renders (Lua split, JSON access log, security headers, rate limiting
  off as in a benchmark), at rust 50;
- plain: `worker_processes 2`, a weighted upstream (50/50, keepalive) and nginx's
  `combined` access log: what a team would write by hand.
Goal (issue 19): vrm / plain >= 0.90.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Stack, new_stack
from vrm_tui.core.split import Split
from vrm_tui.system.procs import free_ports
from vrm_tui.traffic.nginx import nginx_binary

pytestmark = pytest.mark.perf

ROUNDS = 3
SECONDS = 5

BACKENDS = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{rust};
        listen 127.0.0.1:{ts};
        default_type application/json;
        location / {{ return 200 '{{"status":"ok","tasks_processed":42}}'; }}
    }}
}}
"""

PLAIN = """
worker_processes 2;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {tmp}/access.log combined;
    client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
    keepalive_timeout 65;
    keepalive_requests 10000;
    upstream vision_backend {{
        server 127.0.0.1:{rust} weight=50;
        server 127.0.0.1:{ts} weight=50;
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /api/v1/vision/ {{
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://vision_backend;
        }}
    }}
}}
"""


class Nginx:
    """A throwaway nginx from a config text."""

    def __init__(self, root: Path, text: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        conf = root / "nginx.conf"
        conf.write_text(text)
        subprocess.run([nginx_binary(), "-c", str(conf), "-p", str(root)], check=True,
                       capture_output=True, timeout=30)

    def stop(self) -> None:
        subprocess.run([nginx_binary(), "-c", str(self.root / "nginx.conf"), "-p",
                        str(self.root), "-s", "stop"], capture_output=True, timeout=30,
                       check=False)


def wrk(url: str, seconds: int = SECONDS) -> float:
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", url], capture_output=True,
                         text=True, check=True, timeout=seconds + 60).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert errors is None, out
    return float(found.group(1))


@pytest.fixture
def proxies(tmp_path: Path) -> Iterator[tuple[str, str, Stack]]:
    if shutil.which("wrk") is None:
        pytest.skip("WRK MISSING: scripts/test.sh installs wrk")
    rust, ts, plain_port = free_ports(3)
    backends = Nginx(tmp_path / "backends", BACKENDS.format(tmp=tmp_path / "backends",
                                                             rust=rust, ts=ts))
    plain = Nginx(tmp_path / "plain", PLAIN.format(tmp=tmp_path / "plain", rust=rust, ts=ts,
                                                    port=plain_port))
    (tmp_path / "vrm").mkdir()
    stack = new_stack(tmp_path / "vrm", RUST_BACKEND_URL=f"http://127.0.0.1:{rust}",
                      TS_BACKEND_URL=f"http://127.0.0.1:{ts}", PROXY_RATE_LIMIT="0",
                      VRM_MONITORING="0")
    stack.up()
    stack.controller.set_split(Split(50))
    try:
        yield f"{stack.proxy}/api/v1/vision/metrics", \
            f"http://127.0.0.1:{plain_port}/api/v1/vision/metrics", stack
    finally:
        stack.down()
        plain.stop()
        backends.stop()


def test_vrm_proxy_vs_a_plain_nginx(proxies: tuple[str, str, Stack]) -> None:
    vrm_url, plain_url, _ = proxies
    wrk(vrm_url, 1)  # warm both (connections, caches)
    wrk(plain_url, 1)
    vrm, plain = [], []
    for _ in range(ROUNDS):
        vrm.append(wrk(vrm_url))
        plain.append(wrk(plain_url))
    ratio = statistics.median(vrm) / statistics.median(plain)
    print(f"\nProxy throughput, wrk -t1 -c32 -d{SECONDS}s, GET /api/v1/vision/metrics, "
          f"static backends, median of {ROUNDS} alternated (goal: vrm/plain >= 0.90)\n"
          f"vrm's nginx        {statistics.median(vrm):9.0f} req/s  "
          f"({', '.join(f'{v:.0f}' for v in vrm)})\n"
          f"plain nginx        {statistics.median(plain):9.0f} req/s  "
          f"({', '.join(f'{v:.0f}' for v in plain)})\n"
          f"ratio vrm/plain    {ratio:9.2f}x")
