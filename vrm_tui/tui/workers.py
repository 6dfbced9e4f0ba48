"""The app's threads that change traffic, and its watch on the terminal.

A traffic change (rollback above all) runs in a thread of its own, not the event loop's
pool: the polls share that pool, and with a backend hung each waits out its timeout there,
so a rollback queued behind them would wait seconds. Quitting (or a hang-up) waits for a
change in flight, so a rollback always finishes, and the demo stops its stack only after.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from vrm_tui.console import ApplyResult
from vrm_tui.core.errors import VrmError
from vrm_tui.tui.messages import ActionDone, ActionProgress, MigrationAsked

if TYPE_CHECKING:
    from textual.app import App

HANGUP_GRACE_S = 2.0
ACTION_WAIT_S = 60.0  # longest a traffic change runs (lock wait + verification), with room


class Changes:
    """Traffic changes and migration steering, each in its own thread, answered with an
    `ActionDone` message timed from the key press."""

    def __init__(self, app: App[None]) -> None:
        self.app = app
        self.running: set[threading.Thread] = set()

    def start(self, name: str, run: Callable[[], None]) -> None:
        thread = threading.Thread(target=run, name=name)
        self.running = {t for t in self.running if t.is_alive()} | {thread}
        thread.start()

    def wait(self) -> None:
        for thread in list(self.running):
            thread.join(ACTION_WAIT_S)

    def write(self, action: str, call: Callable[[], ApplyResult]) -> None:
        def applied(_progress: Callable[[str], None]) -> tuple[bool, str]:
            result = call()
            return True, f"→ {result.after}, generation {result.generation} verified"

        self.report(action, applied)

    def report(self, action: str,
               call: Callable[[Callable[[str], None]], tuple[bool, str]]) -> None:
        """A change that may say how it goes before it ends (`call` gets a function that
        puts a line on the action line) and answers (ok, text) for its ActionDone."""
        started = time.perf_counter()

        def progress(text: str) -> None:
            self.app.post_message(ActionProgress(text))

        def run() -> None:
            try:
                ok, text = call(progress)
            except VrmError as exc:
                ok, text = False, str(exc)
            except Exception as exc:
                ok, text = False, f"{type(exc).__name__}: {exc}"
            self.app.post_message(ActionDone(action, ok, text,
                                             (time.perf_counter() - started) * 1000))

        self.start(f"vrm-{action}", run)

    def steer(self, what: str, call: Callable[[], object]) -> None:
        """Steering talks to files and may spawn a guard: never the UI thread."""

        def run() -> None:
            try:
                result = call()
                text = result if isinstance(result, str) else f"migration {what}: guard runs it"
                self.app.post_message(ActionDone(f"migration {what}", True, text, 0.0))
            except VrmError as exc:
                self.app.post_message(ActionDone(f"migration {what}", False, str(exc), 0.0))
            except Exception as exc:
                self.app.post_message(ActionDone(f"migration {what}", False,
                                                 f"{type(exc).__name__}: {exc}", 0.0))
            self.app.post_message(MigrationAsked())

        self.start(f"vrm-migration-{what}", run)


class Lifeline:
    """Leave when the SSH session is gone (no orphan spinning a core)."""

    def __init__(self, app: App[None], changes: Changes) -> None:
        self.app = app
        self.changes = changes
        self.launch_ppid = os.getppid()  # reparented to init later: the session is gone
        self.timer: threading.Timer | None = None

    def check(self) -> None:
        if self.app.is_headless:
            return
        stream = sys.__stdin__
        orphaned = os.getppid() != self.launch_ppid and os.getppid() == 1
        if stream is None or not os.isatty(stream.fileno()) or orphaned:
            self.hang_up()

    def hang_up(self) -> None:
        """The terminal is gone: exit cleanly if we can, and for certain soon after.

        Restoring a terminal that no longer exists can block or fail; nobody is left to
        see it, and a TUI spinning on a dead tty is worse than a hard exit."""
        if self.timer is None:
            self.timer = threading.Timer(HANGUP_GRACE_S, self._force_exit)
            self.timer.daemon = True
            self.timer.start()
        self.app.exit(return_code=129)

    def _force_exit(self) -> None:
        """The hang-up's hard exit, once a traffic change in flight has finished."""
        self.changes.wait()
        os._exit(129)

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
