"""Bringing a stack up and down, journaled, whichever runtime runs it."""

from __future__ import annotations

from vrm_tui.core.errors import StackError
from vrm_tui.journal import Record, Stopwatch
from vrm_tui.settings import Settings
from vrm_tui.stack.compose import ComposeRuntime
from vrm_tui.stack.local import LocalRuntime
from vrm_tui.stack.runtime import Runtime
from vrm_tui.traffic.controller import ApplyError, TrafficController


def runtime_for(settings: Settings) -> Runtime:
    """The runtime VRM_RUNTIME names, or the one detected: compose when the state dir's
    proxy runs as a compose container, local otherwise."""
    name = settings.runtime or detect(settings)
    if name == "compose":
        return ComposeRuntime(settings)
    return LocalRuntime(settings)


def detect(settings: Settings) -> str:
    marker = settings.paths.runtime_marker
    try:
        return marker.read_text().strip() or "local"
    except OSError:
        return "local"


def bring_up(runtime: Runtime, controller: TrafficController) -> list[str]:
    """Start whatever is not running; a fresh proxy starts on the configured split."""
    watch = Stopwatch()
    try:
        started = runtime.start_dependencies()
        if controller.store.current() is None:
            controller.prepare(controller.settings.split)
        started += [name for name in runtime.up() if name not in started]
        controller.settings.paths.runtime_marker.write_text(runtime.name + "\n")
    except (StackError, ApplyError) as exc:
        controller.journal.append(Record(action="up", result="failed", duration_ms=watch.ms(),
                                         detail=str(exc)))
        raise
    if started:
        controller.journal.append(Record(action="up", result="ok", duration_ms=watch.ms(),
                                         detail="started " + ", ".join(started)))
    return started


def bring_down(runtime: Runtime, controller: TrafficController,
               names: list[str] | None = None) -> list[str]:
    """Stop what vrm started: everything, or just `names`."""
    watch = Stopwatch()
    if names is None:
        stopped = runtime.down()
    else:
        stopped = [name for name in names if runtime.stop_service(name)]
    if stopped:
        controller.journal.append(Record(action="down", result="ok", duration_ms=watch.ms(),
                                         detail="stopped " + ", ".join(stopped)))
    return stopped
