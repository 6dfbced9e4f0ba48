"""Keeps nginx's logs under their size cap whatever the traffic, not only when vrm acts.

A flood (`wrk` on an unknown path, or 429s) wrote 900 MB of access log in 30 s while the
logs were rotated only on vrm's actions. The local runtime starts this process beside each
nginx master it starts: once a second it rotates a log past the cap (the controller's own
rotation: rename to `.1`, USR1 to the master, under the traffic lock, skipped while another
vrm acts), and it exits when that master is gone. On disk each log is then at most the cap
plus one second of writes, and one `.1` of the same size.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from vrm_tui.settings import load as load_settings
from vrm_tui.system.procs import start_ticks
from vrm_tui.traffic.controller import LOG_MAX_BYTES, TrafficController

INTERVAL_S = 1.0


def keep(controller: TrafficController, master: int, stop: threading.Event,
         interval: float = INTERVAL_S) -> None:
    """Rotate past-cap logs every `interval` until `master` (nginx) exits or `stop` is set."""
    ticks = start_ticks(master)
    while ticks is not None and not stop.wait(interval):
        if start_ticks(master) != ticks:  # gone, or its pid taken by another process
            return
        controller.rotate_logs()


def main(argv: list[str] | None = None) -> int:
    from vrm_tui.stack.local import LocalRuntime

    parser = argparse.ArgumentParser(prog="python -m vrm_tui.stack.logkeeper")
    parser.add_argument("--deploy-dir", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--master", type=int, required=True, help="nginx master pid")
    parser.add_argument("--max-bytes", type=int, default=LOG_MAX_BYTES)
    parser.add_argument("--interval", type=float, default=INTERVAL_S)
    args = parser.parse_args(argv)
    settings = load_settings({"VRM_STATE_DIR": str(args.state_dir)},
                             deploy_dir=args.deploy_dir)
    controller = TrafficController(settings, LocalRuntime(settings))
    controller.log_max_bytes = args.max_bytes
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # outlives the terminal that started it
    keep(controller, args.master, stop, args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
