"""vrm's actions in the command palette (ctrl+p), from the same bindings as the footer.

An observer (`--read-only`) is offered only what it may run, as in its footer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Protocol

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider

PALETTE_ACTIONS = {"rollback": "Roll back (all traffic to typescript)",
                   "set_weight": "Set rust weight", "rust_up": "Rust up one step",
                   "rust_down": "Rust down one step", "reload_nginx": "Reload nginx",
                   "benchmark": "Benchmark rust vs typescript", "logs": "Logs",
                   "window": "Latency window", "help": "Help: every key"}
"""The actions offered, in this order (quit and migration steering stay on their keys)."""


class Refusing(Protocol):
    BINDINGS: list[Binding]

    def refusal(self, action: str) -> str | None: ...


def vrm_commands(app: Refusing) -> Iterator[tuple[str, str, str]]:
    """(title, help, action) for each action the app may run now."""
    bindings = {b.action: b for b in app.BINDINGS if isinstance(b, Binding)}
    for action, title in PALETTE_ACTIONS.items():
        binding = bindings.get(action)
        if binding is None or app.refusal(action):
            continue
        key = binding.key_display or binding.key.split(",")[0]
        yield f"vrm: {title} ({key})", binding.tooltip, action


class VrmCommands(Provider):
    """Rollback, set weight, reload, benchmark, logs, help: typed or picked."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], object]]]:
        app = self.app
        for title, help_text, action in vrm_commands(app):  # type: ignore[arg-type]
            yield title, help_text, partial(app.run_action, action)

    async def discover(self) -> Hits:
        for title, help_text, run in self._commands():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._commands():
            if (score := matcher.match(title)) > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
