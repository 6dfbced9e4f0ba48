"""Bringing a stack up and down, journaled, whichever runtime runs it."""

from __future__ import annotations

import contextlib
import sys

from vrm_tui.core import services
from vrm_tui.core.errors import ApplyError, StackError, environment_fault
from vrm_tui.journal import Record, Stopwatch
from vrm_tui.settings import RuntimeName, Settings
from vrm_tui.stack.runtime import Runtime
from vrm_tui.traffic.controller import TrafficController


def runtime_for(settings: Settings) -> Runtime:
    """The runtime VRM_RUNTIME names, or the one detected: compose when the state dir's
    proxy runs as a compose container, local otherwise."""
    name = settings.runtime or detect(settings)
    if name == "compose":
        from vrm_tui.stack.compose import ComposeRuntime

        return ComposeRuntime(settings)
    from vrm_tui.stack.local import LocalRuntime

    return LocalRuntime(settings)


def detect(settings: Settings) -> RuntimeName:
    marker = settings.paths.runtime_marker
    try:
        found = marker.read_text().strip()
    except OSError:
        return "local"
    return "compose" if found == "compose" else "local"


LIFECYCLE_LOCK_WAIT_S = 120.0
"""Bring-up waits this long for another vrm's action (its own start takes up to ~20 s per
service)."""


def bring_up(runtime: Runtime, controller: TrafficController) -> list[str]:
    """Start whatever is not running; a fresh proxy starts on the configured split, or on
    the last verified generation when a change was interrupted.

    Under the traffic lock: two vrm processes never start the same stack twice."""
    watch = Stopwatch()
    notes: list[str] = []
    started: list[str] = []
    running = _running(runtime)
    try:
        with controller.lock.hold("up", timeout=LIFECYCLE_LOCK_WAIT_S):
            controller.rotate_logs()
            started += runtime.start_dependencies()
            if controller.store.current() is None:
                controller.prepare(controller.settings.split)
            elif not runtime.proxy_running():
                notes = [n for n in [controller.settle_for_start()] if n]
            started += [name for name in runtime.up() if name not in started]
            if services.PROXY in started:
                controller.mark_started()
            controller.settings.paths.runtime_marker.write_text(runtime.name + "\n")
    except (StackError, ApplyError, OSError) as exc:
        # Nothing this bring-up started is left running for an operator who got an error
        # (a rejected first config would otherwise leave the backends up, untracked by intent;
        # a full disk fails inside runtime.up(), after some services started).
        error: Exception = exc
        if isinstance(exc, OSError):
            fault = environment_fault(exc, controller.settings.state_dir)
            error = StackError(f"cannot start the stack: {fault or exc}")
        late = [name for name in _running(runtime) if name not in running | set(started)]
        for name in reversed(started + late):
            with contextlib.suppress(StackError, OSError):
                runtime.stop_service(name)
        _journal(controller, Record(action="up", result="failed", duration_ms=watch.ms(),
                                    detail=str(error)))
        if error is exc:
            raise
        raise error from None
    if started:
        _journal(controller, Record(action="up", result="ok", duration_ms=watch.ms(),
                                    detail="; ".join(["started " + ", ".join(started), *notes])))
    return started


def bring_down(runtime: Runtime, controller: TrafficController,
               names: list[str] | None = None) -> list[str]:
    """Stop what vrm started: everything, or just `names` (under the traffic lock)."""
    watch = Stopwatch()
    with controller.lock.hold("down", timeout=LIFECYCLE_LOCK_WAIT_S):
        if names is None:
            stopped = runtime.down()
        else:
            stopped = [name for name in names if runtime.stop_service(name)]
    if stopped:
        _journal(controller, Record(action="down", result="ok", duration_ms=watch.ms(),
                                    detail="stopped " + ", ".join(stopped)))
    return stopped


def _running(runtime: Runtime) -> set[str]:
    return {found.name for found in runtime.services() if found.state == "running"}


def _journal(controller: TrafficController, record: Record) -> None:
    """Journal a lifecycle step; an unwritable journal is said on stderr, not a traceback."""
    try:
        controller.journal.append(record)
    except OSError as exc:
        print(f"vrm: warning: the journal {controller.journal.path} could not be written "
              f"({exc.strerror or exc}): this {record.action} is not journaled",
              file=sys.stderr)
