"""The migration guard: a detached process that runs one migration, outliving the terminal,
the TUI and the SSH session that started it.

`spawn()` starts it (new session, no terminal, output to `logs/migration-guard.log`) and waits
until it has claimed the migration. The guard holds `migration-guard.lock` for its whole life,
so two guards never run one migration; it beats a heartbeat every second (naming its
migration, into a file allocated at its start so a full disk cannot stop it), so a guard that
dies shows everywhere as UNGUARDED within seconds. `python -m vrm_tui.wiring guard` is its
entry: the composition root builds its runner (controller, parity) as it builds the console's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from vrm_tui.core import services
from vrm_tui.core.errors import Failure, MigrationBusy
from vrm_tui.migrate.runner import Runner
from vrm_tui.migrate.state import CLAIM_TIMEOUT_S, StateStore
from vrm_tui.settings import Settings
from vrm_tui.system.logfiles import last_lines
from vrm_tui.system.procs import ProcRecord

SERVICE = services.MIGRATION_GUARD


def spawn(settings: Settings, restart_step: bool = False) -> ProcRecord:
    """Start a guard for the recorded migration and wait until it runs it."""
    paths = settings.paths
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = paths.service_log(SERVICE)
    command = [sys.executable, "-m", "vrm_tui.wiring", "guard",
               "--deploy-dir", str(settings.deploy_dir), "--state-dir", str(settings.state_dir)]
    if restart_step:
        command.append("--restart-step")
    env = dict(os.environ)
    env.update({"VRM_DEPLOY_DIR": str(settings.deploy_dir),
                "VRM_STATE_DIR": str(settings.state_dir)})
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env=env, cwd=settings.deploy_dir)
    record = ProcRecord.of(SERVICE, proc.pid, command, {})
    record.save(paths.run)
    store = StateStore(settings.state_dir)
    deadline = time.monotonic() + CLAIM_TIMEOUT_S
    while time.monotonic() < deadline:
        state = store.load()
        if state is not None and state.owner_pid == proc.pid and store.last_beat(state.id):
            return record
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    tail = "\n  ".join(last_lines(log, 6)) if log.exists() else ""
    raise Failure(f"the migration guard did not take over within {CLAIM_TIMEOUT_S:.0f}s; "
                  f"its log ({log}) ends:\n  {tail}")


def stop(settings: Settings) -> bool:
    """Stop this state dir's guard (its migration stays recorded and can be resumed);
    True if one ran."""
    return ProcRecord.stop_recorded(settings.paths.run, SERVICE)


def _hold_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MigrationBusy("another guard already runs this migration") from None
    return fd


def _say(text: str) -> None:
    """A line in the guard's log; a full disk loses the line, never the guard."""
    with contextlib.suppress(OSError):
        print(f"guard {os.getpid()}: {text}", flush=True)


def serve(settings: Settings, runner_for: Callable[[threading.Event], Runner],
          restart_step: bool = False) -> int:
    """The guard process's life: hold the guard lock, then run the recorded migration with
    the runner `runner_for(stop)` builds (the composition root's, `vrm_tui.wiring`)."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no terminal to lose; never dies with one
    try:
        lock = _hold_lock(settings.paths.migration_guard_lock)
    except MigrationBusy as exc:
        _say(f"{exc}")
        return 1
    try:
        store = StateStore(settings.state_dir)
        state = store.load()
        if state is None or not state.active:
            _say("no active migration to run")
            return 1
        _say(f"running migration {state.id} at step {state.step + 1} ({state.phase})")
        state = runner_for(stop).run(state, restart_step=restart_step)
        _say(f"migration {state.id} {state.phase}: {state.reason}")
        return 0
    finally:
        os.close(lock)
