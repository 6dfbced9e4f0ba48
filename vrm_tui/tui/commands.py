"""vrm's actions in the command palette (ctrl+p), from the same bindings as the footer.

An observer (`--read-only`) is offered only what it may run, as in its footer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider

from vrm_tui.tui.actions import ACTIONS


class Refusing(Protocol):
    def refusal(self, action: str) -> str | None: ...


def vrm_commands(app: Refusing) -> Iterator[tuple[str, str, str]]:
    """(title, help, action) for each palette action (actions.py) the app may run now."""
    for found in ACTIONS:
        if not found.palette or app.refusal(found.action):
            continue
        key = found.key_display or found.keys.split(",")[0]
        yield f"vrm: {found.palette} ({key})", found.tooltip, found.action


class VrmCommands(Provider):
    """Rollback, set weight, reload, benchmark, logs, help: typed or picked."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], object]]]:
        app = self.app
        for title, help_text, action in vrm_commands(app):  # type: ignore[arg-type]
            # on the screen it was opened on (the dashboard: its actions live there)
            yield title, help_text, partial(app.run_action, action, self.screen)

    async def discover(self) -> Hits:
        for title, help_text, run in self._commands():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._commands():
            if (score := matcher.match(title)) > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
