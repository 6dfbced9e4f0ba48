"""The command palette (ctrl+p) with rollback above it.

Textual's palette is a modal whose search field takes every printable key, so `r` was typed
into the search and rollback was lost. The app's rollback binding has priority (it runs
before any screen sees the key) and `ctrl+r` is never typed; here `r` as the first key of an
empty search rolls back too, which is what a hand that opened the palette by mistake
presses. Once a search has text, `r` types (ctrl+r still rolls back).
"""

from __future__ import annotations

from textual.command import CommandInput, CommandPalette

PLACEHOLDER = "Search for commands…   (r on an empty search or ctrl+r: roll back)"


class VrmPalette(CommandPalette):
    def __init__(self) -> None:
        super().__init__(placeholder=PLACEHOLDER, id="--command-palette")

    def on_mount(self) -> None:
        field = self.query_one(CommandInput)
        consumes = field.check_consume_key

        def check_consume_key(key: str, character: str | None) -> bool:
            return not (key == "r" and not field.value) and consumes(key, character)

        field.check_consume_key = check_consume_key  # type: ignore[method-assign]
