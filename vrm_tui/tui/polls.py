"""The dashboard's polls: what is fetched, how often, and when an answer reaches the panes
(dolphie's worker manager, in one module).

Each source has its fetch in a typed table (no method chosen by name). A poll runs in a
thread worker and is re-armed only once it has finished, so polls never pile up; a source
that fails is asked again later and later (back-off, up to `BACKOFF_MAX_S`), and a source
whose pane is hidden is not asked at all until it shows. Answers that only refresh numbers
wait for the once-a-second paint; a source's first answer, its failures, a change of its
headline and what an action asks for are posted at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING

from textual.message import Message

from vrm_tui.tui.messages import SourceFailed

if TYPE_CHECKING:
    from textual.app import App


class Source(StrEnum):
    """A poll source: what one fetch reads."""

    STATUS = "status"
    TRAFFIC = "traffic"
    VRAM = "vram"
    JOURNAL = "journal"
    MIGRATION = "migration"
    ALERTS = "alerts"
    HISTORY = "history"
    GPU = "gpu"
    PARITY = "parity"
    FLEET = "fleet"


POLL_S: Mapping[Source, float] = {
    Source.STATUS: 1.0, Source.TRAFFIC: 1.0, Source.VRAM: 2.0, Source.JOURNAL: 0.5,
    Source.MIGRATION: 1.0, Source.ALERTS: 3.0, Source.HISTORY: 60.0, Source.GPU: 2.0,
    Source.PARITY: 2.0, Source.FLEET: 1.0}
PAINTED = frozenset(POLL_S) - {Source.JOURNAL}
"""Sources whose answer replaces the last one reach the panes on one clock: a frame (layout,
render, write) per second for all of them, not one per poll. The journal (news, not a
state) is shown at once."""
MONITORING = frozenset({Source.ALERTS, Source.HISTORY})
"""Polled only where the stack has monitoring (Prometheus)."""
FLEET = frozenset({Source.FLEET})
"""Polled only in fleet mode (VRM_FLEET and VRM_FLEET_ENDPOINTS set)."""
BACKOFF_MAX_S = 30.0
"""A failing source is asked at most this far apart (its interval doubles per failure)."""

Fetch = Callable[[], Message]


def headline(message: Message) -> object:
    """A message's headline (see `messages`), None for one without (a failure, the journal)."""
    found = getattr(message, "headline", None)
    return found() if callable(found) else None


class Polls:
    """The polls of one app: `fetchers` read a source; `visible(source)` says whether its
    pane shows (a hidden pane's source is asked again only once it shows)."""

    def __init__(self, app: App[None], fetchers: Mapping[Source, Fetch],
                 visible: Callable[[Source], bool] = lambda source: True) -> None:
        self.app = app
        self.fetchers: dict[Source, Fetch] = dict(fetchers)
        self.visible = visible
        self.fresh: dict[Source, Message] = {}  # source -> newest answer, not yet painted
        self.shown: set[Source] = set()  # sources whose first answer was shown
        self.headlines: dict[Source, object] = {}  # source -> newest answer's headline
        self.failures: dict[Source, int] = {}  # source -> failures in a row
        self._asked: dict[Source, float] = {}  # source -> when its newest answer was asked
        self._answers = threading.Lock()

    def start(self, sources: frozenset[Source] | set[Source]) -> None:
        for source in POLL_S:
            if source in sources:
                self.poll(source)

    def interval(self, source: Source) -> float:
        """The wait before the next poll: longer after each failure in a row."""
        failed = self.failures.get(source, 0)
        return min(POLL_S[source] * 2.0 ** failed, max(BACKOFF_MAX_S, POLL_S[source]))

    def poll(self, source: Source, repeat: bool = True) -> None:
        """Fetch in a worker; with `repeat`, the next poll is armed once this one finished.
        `repeat=False` is an action's own read: shown at once, whatever the paint."""
        fetch = self.fetchers[source]

        def run() -> None:
            asked = time.monotonic()
            try:
                message: Message = fetch()
            except Exception as exc:  # a failing source is shown, never raised
                message = SourceFailed(source, f"{type(exc).__name__}: {exc}")
            self._answer(source, message, asked, repeat)
            if repeat:
                with contextlib.suppress(RuntimeError):  # the app is closing
                    self.app.call_from_thread(self._later, source)

        self.app.run_worker(run, thread=True, group=f"poll-{source}", exit_on_error=False)

    def _answer(self, source: Source, message: Message, asked: float, repeat: bool) -> None:
        failed = isinstance(message, SourceFailed)
        shown: Message | None = message
        with self._answers:  # decided and posted together: answers stay in order
            self.failures[source] = self.failures.get(source, 0) + 1 if failed else 0
            if asked < self._asked.get(source, -1.0):
                # A newer answer is out, or waits for the paint: an action's own read shows
                # that one now instead of this older one.
                shown = None if repeat else self.fresh.pop(source, None)
            elif repeat and source in PAINTED and source in self.shown and not failed \
                    and not self._news(source, message):
                self.fresh[source] = message  # the next paint shows it
                shown = None
            else:
                self.fresh.pop(source, None)
                self.shown.add(source)
                self.headlines[source] = headline(message)
            self._asked[source] = max(asked, self._asked.get(source, -1.0))
            if shown is not None:
                self.app.post_message(shown)  # from a thread: only queues it

    def _news(self, source: Source, message: Message) -> bool:
        """The answer changes its source's headline (rust went down, started failing): bad
        news is not held for the paint. Called under `_answers`."""
        found = headline(message)
        return found is not None and found != self.headlines.get(source)

    def _later(self, source: Source) -> None:
        """Arm the next poll, unless the app is on its way out; a hidden pane's source waits
        (checked again each interval) instead of fetching."""
        app = self.app
        if not app.is_running or app._exit:
            return
        if self.visible(source):
            app.set_timer(self.interval(source), lambda: self.poll(source))
        else:
            app.set_timer(POLL_S[source], lambda: self._later(source))

    def paint(self) -> None:
        """Hand the panes what the polls fetched since the last paint, in one frame."""
        with self._answers:
            fresh, self.fresh = self.fresh, {}
            for message in fresh.values():
                self.app.post_message(message)
