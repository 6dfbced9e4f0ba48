"""Migration pane: the step timeline and each gate's live value against its threshold.

It shows the persisted migration state, so a migration run from the CLI, or from a pairing
partner's TUI, appears here just the same.
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from vrm_tui.migrate.state import MigrationState

STEP_MARK = {"done": "✓", "current": "●", "todo": "·", "failed": "✗"}
GATE_STYLE = {"pass": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"),
              "inconclusive": ("?", "dim")}
PHASE_STYLE = {"done": "green", "rolled-back": "red", "aborted": "yellow", "paused": "yellow"}


class MigrationPane(Static):
    def on_mount(self) -> None:
        self.border_title = "Migration"

    def show_state(self, state: MigrationState | None) -> None:
        self.display = state is not None
        if state is None:
            return
        steps = state.plan["steps"]
        line = Text(f"{state.id}  ")
        for index, weight in enumerate(steps):
            if index < state.step or (index == state.step and state.phase == "done"):
                kind = "done"
            elif index == state.step:
                kind = "failed" if state.phase == "rolled-back" else "current"
            else:
                kind = "todo"
            line.append(f"{STEP_MARK[kind]} {weight}%", style="bold" if kind == "current" else "")
            if index < len(steps) - 1:
                line.append(" → ")
        line.append(f"   {state.phase}", style=PHASE_STYLE.get(state.phase, "bold"))
        if state.phase == "baking" and state.step_started:
            baked = time.time() - state.step_started
            line.append(f" {baked:.0f}/{state.plan['bake_seconds']:g}s")
        parts: list[Text | Table] = [line]
        if state.reason:
            parts.append(Text(state.reason[:300], style=PHASE_STYLE.get(state.phase, "")))
        gates = (state.verdict or {}).get("gates", [])
        if gates:
            table = Table(box=None, pad_edge=False, expand=True, show_header=False)
            for column in ("gate", "status", "value", "threshold"):
                table.add_column(column, no_wrap=True, overflow="ellipsis")
            for gate in gates:
                symbol, style = GATE_STYLE.get(gate["status"], ("?", ""))
                table.add_row(Text(str(gate["name"])),
                              Text(f"{symbol} {gate['status']}", style=style),
                              Text(str(gate["value"])), Text(str(gate["threshold"])))
            parts.append(table)
        if state.active:
            parts.append(Text("m: pause/resume   r: roll back (stops the migration)",
                              style="dim"))
        self.update(Group(*parts))
