"""`python -m vrm_tui.control`: vrm-control, vrm's own helpers as one compose service.

Under compose the guard and the comparator must outlive the host's sessions and come back
with the stack (`restart: unless-stopped`), so they run in a container of the project:

- the parity comparator, on the compose network (nginx mirrors to this container's fixed
  address while `vrm parity on`), started afresh whenever mirroring is switched on or off so
  its counts start where the console's do; its /health is vrm-control's;
- a standby migration guard: an active migration whose guard is gone (no heartbeat for
  UNGUARDED_AFTER_S, its guard lock free) is adopted as `vrm migrate resume` would, with the
  runner the composition root builds. A guard that the host's vrm started keeps its lock,
  so this one waits behind it; when it dies, this one takes over.

It is built from the composition root like the console and the host's guard. Its loopback
forwards each port the host publishes on 127.0.0.1 to the service behind it (`Loopback`), so
the guard's settings (the status listener, the backends' health, Prometheus' alerts) mean
here what they mean on the host; its runtime (`ControlRuntime`) has no Docker access.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from vrm_tui.core import services
from vrm_tui.migrate import guard
from vrm_tui.migrate.state import StateStore
from vrm_tui.settings import Settings
from vrm_tui.settings import load as load_settings
from vrm_tui.stack.compose import PORTS, ControlRuntime
from vrm_tui.traffic.mirror import MirrorState
from vrm_tui.wiring import Wiring

if TYPE_CHECKING:
    from vrm_tui.migrate.runner import Runner

__all__ = ["main"]

POLL_S = 1.0


def _say(text: str) -> None:
    print(f"vrm-control: {text}", flush=True)


class Comparator:
    """The comparator process, kept running (restarted should it exit) and started afresh
    each time `vrm parity on|off` switches mirroring."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.since = 0.0

    def command(self) -> list[str]:
        s = self.settings
        return [sys.executable, "-m", "vrm_tui.parity", "--host", "0.0.0.0",
                "--port", str(s.parity_port),
                "--primary", f"http://{services.TYPESCRIPT}:{PORTS[services.TYPESCRIPT]}",
                "--candidate", f"http://{services.RUST}:{PORTS[services.RUST]}",
                "--max-rps", f"{s.parity_max_rps:g}", "--timeout", str(s.proxy_upstream_timeout),
                "--deploy-dir", str(s.deploy_dir), "--state-dir", str(s.state_dir)]

    def follow(self) -> None:
        state = MirrorState.load(self.settings.paths.parity_state)
        running = self.proc is not None and self.proc.poll() is None
        if running and state.since != self.since:  # switched on or off since it started
            self.stop()
            running = False
        if not running:
            if self.proc is not None and self.proc.returncode not in (None, 0):
                _say(f"the comparator exited {self.proc.returncode}; starting it again")
            self.since = state.since
            self.proc = subprocess.Popen(self.command())
            _say(f"comparator started (pid {self.proc.pid})")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Loopback:
    """127.0.0.1:PORT -> service:port for each forward, in a thread of its own."""

    def __init__(self, forwards: dict[int, tuple[str, int]]) -> None:
        self.forwards = forwards
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="loopback",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()
        for port, target in self.forwards.items():
            asyncio.run_coroutine_threadsafe(self._listen(port, target), self.loop).result()

    async def _listen(self, port: int, target: tuple[str, int]) -> None:
        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                far_reader, far_writer = await asyncio.open_connection(*target)
            except OSError:
                writer.close()
                return
            try:
                await asyncio.gather(_pipe(reader, far_writer), _pipe(far_reader, writer))
            finally:
                for end in (writer, far_writer):
                    with contextlib.suppress(OSError):
                        end.close()

        await asyncio.start_server(relay, "127.0.0.1", port)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (the other direction may still be talking)."""
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


def _orphaned(store: StateStore) -> bool:
    """An active migration no guard looks after (vrm status shows it UNGUARDED)."""
    state = store.load()
    return state is not None and state.active and not store.guarded(state)


def serve(settings: Settings) -> int:
    """Follow parity (a thread) and stand by as guard (the main thread: the guard's signal
    handlers need it) until SIGTERM."""
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()

    def arm() -> None:  # the guard installs its own handlers while it runs a migration
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)

    arm()
    runtime = ControlRuntime(settings)
    loopback = Loopback(runtime.forwards())
    loopback.start()
    store = StateStore(settings.state_dir)
    comparator = Comparator(settings)
    halts: list[threading.Event] = []  # the adopted guard's stop, set by its SIGTERM handler

    def runner_for(halt: threading.Event) -> Runner:
        halts.append(halt)
        return Wiring(settings, runtime).runner(halt)

    _say(f"watching {settings.state_dir} (comparator on :{settings.parity_port}, "
         f"nginx at {services.PROXY})")
    done = threading.Event()

    def follow_parity() -> None:  # in step with `vrm parity` while a migration runs, too
        while not done.is_set():
            comparator.follow()
            done.wait(POLL_S)

    follower = threading.Thread(target=follow_parity, name="parity", daemon=True)
    follower.start()
    try:
        while not stop.is_set():
            if _orphaned(store):
                _say("adopting a migration whose guard is gone")
                halts.clear()
                code = guard.serve(settings, runner_for)
                _say(f"guard finished ({code})")
                arm()
                if any(halt.is_set() for halt in halts):
                    break
                if code != 0:  # another guard took it first, or nothing left to run
                    stop.wait(POLL_S)
            stop.wait(POLL_S)
    finally:
        done.set()
        follower.join()
        comparator.stop()
        loopback.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vrm_tui.control",
                                     description="vrm-control: comparator and standby guard")
    parser.add_argument("--deploy-dir", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = load_settings({"VRM_STATE_DIR": str(args.state_dir), "VRM_RUNTIME": "compose"},
                             deploy_dir=args.deploy_dir)
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
