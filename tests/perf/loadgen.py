"""`python -m tests.perf.loadgen URL RATE SECONDS`: steady open-loop GETs from another process,
so the load generator's CPU is not counted against what is being measured. SIGTERM ends it
early, with its count printed."""

from __future__ import annotations

import asyncio
import signal
import sys

from tests.support import steady_stream


async def _main(url: str, rate: float, seconds: float) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    sent = await steady_stream(url, rate, stop, limit_s=seconds + 5)
    failed = sum(1 for s in sent if s.error or s.status != 200)
    print(f"sent {len(sent)} failed {failed}", flush=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
