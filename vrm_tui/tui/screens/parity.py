"""Parity examples side by side: the request, then the differing paths (mismatches first) with
typescript's two answers (their difference is noise) next to rust's. n / p step through them."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Footer, Static

from vrm_tui.tui.screens.modal import VrmModal

OUTCOME_STYLE = {"mismatch": "red bold", "noise": "dim", "within_tolerance": "yellow"}


def _value(entry: dict[str, Any], side: str) -> Text:
    if side not in entry:
        return Text("<missing>", style="italic dim")
    return Text(json.dumps(entry[side], ensure_ascii=False))


class ParityScreen(VrmModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,d", "close", "Close", id="parity.close", tooltip="Back"),
        Binding("n,right", "step(1)", "Next", id="parity.next", tooltip="Newer example"),
        Binding("p,left", "step(-1)", "Prev", id="parity.prev", tooltip="Older example"),
    ]
    CANCEL_ON_ROLLBACK = True

    def __init__(self, examples: list[dict[str, Any]]) -> None:
        super().__init__()
        self.examples = examples
        self.index = len(examples) - 1  # the newest first

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="parity-diff"):
            yield Static(self.render_example(), id="parity-example")
        yield Footer()

    def render_example(self) -> Group | Text:
        if not self.examples:
            return Text("no mismatch examples yet (vrm parity on; examples are kept for "
                        "mismatches only)")
        example = self.examples[self.index]
        request = example["request"]
        head = Text(f"example {self.index + 1} of {len(self.examples)}: ", style="bold")
        head.append(f"{request['method']} {request['path']}")
        body = request.get("body", {})
        shown = json.dumps(body.get("json", body.get("text", "")), ensure_ascii=False)
        table = Table(expand=True, title="typescript (twice) vs rust, by path")
        table.add_column("path", no_wrap=True)
        table.add_column("outcome", no_wrap=True)
        table.add_column("typescript")
        table.add_column("typescript again")
        table.add_column("rust")
        for entry in example["differences"]:
            table.add_row(Text(entry["path"]),
                          Text(entry["outcome"], style=OUTCOME_STYLE.get(entry["outcome"], "")),
                          _value(entry, "primary"), _value(entry, "secondary"),
                          _value(entry, "candidate"))
        status = (f"status: typescript {example['primary']['status']} / "
                  f"{example['secondary']['status']}, rust {example['candidate']['status']}")
        parts: list[Text | Table] = [head, Text(f"request body: {shown[:300]}"), Text(status),
                                     table]
        if example.get("left_out"):
            parts.append(Text(f"{example['left_out']} more differences not kept (the least "
                              "severe; mismatches are kept first)", style="italic"))
        return Group(*parts)

    def action_step(self, delta: int) -> None:
        if self.examples:
            self.index = (self.index + delta) % len(self.examples)
            self.query_one("#parity-example", Static).update(self.render_example())

    def action_close(self) -> None:
        self.dismiss(None)
