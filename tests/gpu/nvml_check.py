"""The NVML path on a real GPU (run by hand where one exists; CI has none):

    PYTHONPATH=. python3 tests/gpu/nvml_check.py

Starts two processes that hold GPU memory (torch), names them rust and typescript, reads
every GPU through vrm_tui.telemetry.gpu and prints what it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from vrm_tui.telemetry.gpu import Owners, read_gpus

HOLD = """
import sys, time, torch
x = torch.empty(int(float(sys.argv[1]) * 1024**3), dtype=torch.uint8, device="cuda")
print("ready", flush=True)
time.sleep(60)
"""


def main() -> int:
    procs = {}
    for owner, gib in (("rust", 2.0), ("typescript", 3.0)):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(gib)], stdout=subprocess.PIPE,
                                text=True)
        procs[owner] = proc
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        started = time.perf_counter()
        report = read_gpus(Owners({p.pid: owner for owner, p in procs.items()}))
        took_ms = (time.perf_counter() - started) * 1000
        print(json.dumps({
            "error": report.error, "driver": report.driver, "read_ms": round(took_ms, 1),
            "gpus": [{"index": g.index, "name": g.name, "used_gb": round(g.used_gb, 2),
                      "total_gb": round(g.total_gb, 2), "util_pct": g.utilization_pct,
                      "rust_gb": round(g.used_by("rust"), 2),
                      "typescript_gb": round(g.used_by("typescript"), 2),
                      "processes": [{"pid": p.pid, "owner": p.owner,
                                     "used_gb": None if p.used_gb is None else round(p.used_gb, 2)}
                                    for p in g.processes]} for g in report.gpus],
            "holders": {owner: p.pid for owner, p in procs.items()},
        }, indent=2))
        return 0 if report.available else 1
    finally:
        for proc in procs.values():
            proc.kill()


if __name__ == "__main__":
    sys.exit(main())
