"""`python -m vrm_tui.rehearsal`: run one rehearsal backend."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from vrm_tui.core.errors import ProfileError
from vrm_tui.core.paths import CONFIGS
from vrm_tui.rehearsal.profile import load_profile
from vrm_tui.rehearsal.server import Backend, serve

PROFILES = CONFIGS / "rehearsal"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vrm_tui.rehearsal",
                                     description="A stand-in Vision Resource Manager backend.")
    parser.add_argument("--flavour", choices=["rust", "typescript"], required=True)
    parser.add_argument("--host", action="append", dest="hosts",
                        help="an address to listen on (repeatable; default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--profile", type=Path, help="profile YAML (default: the flavour's)")
    parser.add_argument("--max-vram-gb", type=float, default=20.0)
    parser.add_argument("--faults", action="store_true",
                        help="serve the fault-injection endpoint on 127.0.0.1:--admin-port")
    parser.add_argument("--admin-port", type=int)
    parser.add_argument("--seed", type=int, help="random seed for repeatable latencies")
    args = parser.parse_args(argv)
    if args.faults and args.admin_port is None:
        parser.error("--faults needs --admin-port")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stdout)
    try:
        profile = load_profile(args.profile or PROFILES / f"{args.flavour}.yaml")
    except ProfileError as exc:
        print(f"rehearsal: {exc}", file=sys.stderr)
        return 2
    if profile.backend != args.flavour:
        print(f"rehearsal: profile {profile.source} is for {profile.backend}, "
              f"not {args.flavour}", file=sys.stderr)
        return 2
    backend = Backend(profile, args.max_vram_gb, seed=args.seed)
    try:
        asyncio.run(serve(backend, args.hosts or ["127.0.0.1"], args.port,
                          args.admin_port if args.faults else None))
    except OSError as exc:
        print(f"rehearsal: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
