"""Bringing a stack up and down, journaled, whichever runtime runs it."""

from __future__ import annotations

from vrm_tui.journal import Record, Stopwatch
from vrm_tui.settings import Settings
from vrm_tui.stack.compose import ComposeRuntime
from vrm_tui.stack.local import LocalRuntime
from vrm_tui.stack.runtime import Runtime, StackError
from vrm_tui.traffic.controller import ApplyError, TrafficController


def runtime_for(settings: Settings) -> Runtime:
    """The runtime VRM_RUNTIME names, or the one detected: compose when the state dir's
    proxy runs as a compose container, local otherwise."""
    name = settings.runtime or detect(settings)
    if name == "compose":
        return ComposeRuntime(settings)
    return LocalRuntime(settings)


def detect(settings: Settings) -> str:
    marker = settings.state_dir / "runtime"
    try:
        return marker.read_text().strip() or "local"
    except OSError:
        return "local"


def bring_up(controller: TrafficController) -> list[str]:
    """Start whatever is not running; a fresh proxy starts on the configured split."""
    watch = Stopwatch()
    runtime = controller.runtime
    try:
        started = runtime.start_dependencies()
        if controller.store.current() is None:
            controller.prepare(controller.settings.split)
        started += [name for name in runtime.up() if name not in started]
        marker = controller.settings.state_dir / "runtime"
        marker.write_text(runtime.name + "\n")
    except (StackError, ApplyError) as exc:
        controller.journal.append(Record(action="up", result="failed", duration_ms=watch.ms(),
                                         detail=str(exc)))
        raise
    if started:
        controller.journal.append(Record(action="up", result="ok", duration_ms=watch.ms(),
                                         detail="started " + ", ".join(started)))
    return started


def bring_down(controller: TrafficController, names: list[str] | None = None) -> list[str]:
    """Stop what vrm started: everything, or just `names`."""
    watch = Stopwatch()
    if names is None:
        stopped = controller.runtime.down()
    else:
        stopped = [name for name in names if controller.runtime.stop_service(name)]
    if stopped:
        controller.journal.append(Record(action="down", result="ok", duration_ms=watch.ms(),
                                         detail="stopped " + ", ".join(stopped)))
    return stopped
