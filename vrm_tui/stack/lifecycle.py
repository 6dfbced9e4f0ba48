"""Bringing a stack up and down, journaled, whichever runtime runs it."""

from __future__ import annotations

from vrm_tui.journal import Record, Stopwatch
from vrm_tui.settings import Settings
from vrm_tui.stack.local import LocalRuntime
from vrm_tui.stack.runtime import Runtime, StackError
from vrm_tui.traffic.controller import TrafficController


def runtime_for(settings: Settings) -> Runtime:
    """The runtime VRM_RUNTIME names."""
    if settings.runtime == "local":
        return LocalRuntime(settings)
    raise StackError(
        f"VRM_RUNTIME={settings.runtime}: the compose runtime is not built yet; "
        "use VRM_RUNTIME=local"
    )


def bring_up(controller: TrafficController) -> list[str]:
    """Start whatever is not running; a fresh proxy starts on the configured split."""
    watch = Stopwatch()
    if controller.store.current() is None:
        controller.prepare(controller.settings.split)
    try:
        started = controller.runtime.up()
    except StackError as exc:
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
