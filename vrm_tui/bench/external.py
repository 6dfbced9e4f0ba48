"""External load engines when installed: `ab` (the seed's tool) and `wrk`, parsed into a Result."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from vrm_tui.bench.engine import Result, Target
from vrm_tui.core.errors import EngineMissing


def run_ab(target: Target, requests: int, concurrency: int, keepalive: bool = True,
           timeout: float = 600) -> Result:
    """Run ApacheBench and read its CSV percentiles (ab's summary rounds to whole ms)."""
    ab = shutil.which("ab")
    if ab is None:
        raise EngineMissing("ab is not installed; install it with: "
                            "sudo apt-get install -y apache2-utils")
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "percentiles.csv"
        command = [ab, "-q", "-n", str(requests), "-c", str(concurrency), "-e", str(table)]
        if keepalive:
            command.append("-k")
        url = target.url
        if target.corpus is not None:
            # ab sends one request: the corpus's most common one.
            request = target.corpus.heaviest()
            url += request.path
            kind = request.header("Content-Type") or "application/octet-stream"
            command += [arg for k, v in request.headers if k.lower() != "content-type"
                        for arg in ("-H", f"{k}: {v}")]
            if request.method in ("POST", "PUT"):
                body = Path(tmp) / "body"
                body.write_bytes(request.body)
                command += ["-p" if request.method == "POST" else "-u", str(body), "-T", kind]
            elif request.method == "HEAD":
                command.append("-i")
            elif request.method != "GET":
                raise EngineMissing(f"ab cannot send {request.method}; use vrm's engine")
        elif target.method == "POST":
            body = Path(tmp) / "body.json"
            body.write_text(json.dumps(target.json or {}))
            command += ["-p", str(body), "-T", "application/json"]
        started = time.time()
        proc = subprocess.run([*command, url], capture_output=True, text=True,
                              timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ab failed: {proc.stderr.strip() or proc.stdout[-300:]}")
        percentiles = {}
        with open(table) as handle:
            for row in csv.reader(handle):
                if row and row[0].replace(".", "").isdigit():
                    percentiles[float(row[0])] = float(row[1])
    return _ab_result(target, concurrency, proc.stdout, percentiles, started)


def _ab_result(target: Target, concurrency: int, text: str, percentiles: dict[float, float],
               started: float) -> Result:
    def number(label: str) -> float:
        match = re.search(rf"^{re.escape(label)}:\s+([\d.]+)", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    result = Result(target.name, target.url, "closed", concurrency, engine="ab")
    result.started = started
    complete = int(number("Complete requests"))
    # ab counts a body whose length differs from the first one's as "Failed (Length)";
    # vision results vary in length, so only connect, receive and exception failures count.
    kinds = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)",
                      text)
    failed = sum(int(k) for k in kinds.groups()) if kinds else int(number("Failed requests"))
    non_2xx = int(number("Non-2xx responses"))
    result.elapsed_s = number("Time taken for tests")
    # ab reports a latency distribution, not samples: rebuild it from its percentiles.
    ok = max(0, complete - failed - non_2xx)
    result.statuses["200"] = ok
    if non_2xx:
        result.statuses["non-2xx"] = non_2xx
    if failed:
        result.errors["ab-failed"] = failed
    points = sorted(percentiles.items())
    for i in range(ok):
        q = 100 * (i + 0.5) / ok if ok else 0
        ms = next((v for p, v in points if p >= q), points[-1][1] if points else 0.0)
        result.latency.record(ms / 1000)
    return result
