"""`python -m vrm_tui.parity`: the parity comparator (the local runtime starts it)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from vrm_tui.core.errors import BadInput
from vrm_tui.core.paths import StateDir
from vrm_tui.parity.config import config_for, load_parity_config
from vrm_tui.parity.service import QUEUE_SIZE, WORKERS, Comparator, Targets, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vrm_tui.parity",
                                     description="Compare mirrored requests: rust vs typescript.")
    parser.add_argument("--port", type=int, required=True, help="listen on HOST:PORT")
    parser.add_argument("--host", default="127.0.0.1",
                        help="listen address (vrm-control: the compose network's)")
    parser.add_argument("--primary", required=True, help="typescript's base URL")
    parser.add_argument("--candidate", required=True, help="rust's base URL")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--deploy-dir", type=Path, default=Path.cwd())
    parser.add_argument("--config", type=Path, help="default: the deployment's configs/parity.yaml")
    parser.add_argument("--max-rps", type=float, default=20.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--queue-size", type=int, default=QUEUE_SIZE)
    parser.add_argument("--workers", type=int, default=WORKERS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stdout)
    for name in ("max_rps", "timeout", "queue_size", "workers"):
        if not getattr(args, name) > 0:
            print(f"parity: --{name.replace('_', '-')}={getattr(args, name)}: expected a "
                  "number above 0", file=sys.stderr)
            return 2
    try:
        config = load_parity_config(args.config or config_for(args.deploy_dir))
    except BadInput as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return 2
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop

    async def run() -> None:
        comparator = Comparator(config, Targets(args.primary.rstrip("/"),
                                                args.candidate.rstrip("/")),
                                StateDir(args.state_dir), args.max_rps, args.queue_size,
                                args.workers, args.timeout)
        await serve(comparator, args.port, args.host)

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run())
    except OSError as exc:
        print(f"parity: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
