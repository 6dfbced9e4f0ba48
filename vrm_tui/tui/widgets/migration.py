"""Migration pane: the step timeline, each gate's live value against its threshold, and what
happens next and when.

It shows the persisted migration state and whether a live guard runs it: a migration whose
guard is gone is UNGUARDED (word and symbol), never shown as baking. A migration started from
the CLI, or from a pairing partner's TUI, appears here just the same.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vrm_tui.console import MigrationView
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import SHADOW, next_line, step_outcomes

STEP_MARK = {"done": "✓", "current": "●", "todo": "·", "failed": "✗", "promoted": "!"}
GATE_STYLE = {"pass": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red"),
              "inconclusive": ("?", "dim")}
PHASE_STYLE = {"done": "green", "rolled-back": "red", "aborted": "yellow", "paused": "yellow",
               "UNGUARDED": "bold red"}
PHASE_MARK = {"UNGUARDED": "⚠ ", "paused": "‖ ", "rolled-back": "✗ ", "done": "✓ "}
GATE_ORDER = {"fail": 0, "inconclusive": 1, "warn": 2, "pass": 3}


class MigrationPane(Pane):
    ROOMY = 100
    """From this terminal width a gate's rule wraps whole; narrower, it is cut."""

    def on_mount(self) -> None:
        self.border_title = "Migration"
        self._view: MigrationView | None = None
        self._roomy: bool | None = None

    def on_resize(self) -> None:
        if self._view is not None and (self.app.size.width >= self.ROOMY) != self._roomy:
            self.show_view(self._view)

    def show_view(self, view: MigrationView | None) -> None:
        self._view = view
        self._roomy = self.app.size.width >= self.ROOMY  # the terminal's: known before layout
        self.display = view is not None
        if view is None:
            return
        state = view.state
        label = view.label
        steps = state.steps
        outcomes = step_outcomes(state)
        line = Text(f"{state.id}  ")
        for index, weight in enumerate(steps):
            if index in outcomes:
                kind = {"passed": "done", "failed": "failed", "stopped": "failed"}.get(
                    outcomes[index], "promoted")
            elif index == state.step:
                kind = "failed" if state.phase == "rolled-back" else (
                    "done" if state.phase == "done" else "current")
            else:
                kind = "todo"
            shown = "shadow" if weight == SHADOW else f"{weight}%"
            line.append(f"{STEP_MARK[kind]} {shown}", style="bold" if kind == "current" else "")
            if index < len(steps) - 1:
                line.append(" → ")
        line.append(f"   {PHASE_MARK.get(label, '')}{label}",
                    style=PHASE_STYLE.get(label, "bold"))
        if state.active:  # a lost guard's clock stopped with its last save
            baked = state.baked(None if view.guarded else state.updated)
            line.append(f" {baked:.0f}/{state.plan['bake_seconds']:g}s")
        if not state.active:  # ended: one line, so Parity and the Journal stay on screen
            line.append(f"  {next_line(state, view.guarded)}",
                        style=PHASE_STYLE.get(label, "dim"))
            line.no_wrap, line.overflow = True, "ellipsis"
            self.show(line)
            return
        # next_line says an ended migration's reason: it is not repeated below it
        parts: list[Text | Table] = [line, Text(next_line(state, view.guarded),
                                                style=PHASE_STYLE.get(label, "dim"))]
        promoted = [text for text in outcomes.values() if text.startswith("promoted")]
        parts += [Text(f"! {text}", style="yellow") for text in promoted]
        gates = sorted((state.verdict or {}).get("gates", []),
                       key=lambda gate: GATE_ORDER.get(gate["status"], 9))
        if gates:
            live = view.guarded and state.phase == "baking"
            table = Table(box=None, pad_edge=False, expand=True, show_header=False,
                          title=None if live else "last gate values (not live)",
                          title_justify="left", title_style="dim")
            # the rule a gate applies (and its name) is read whole where there is room (the
            # rule wraps); at 80 columns a cut rule keeps the rest of the dashboard on screen
            roomy = bool(self._roomy)
            table.add_column("gate", no_wrap=True, overflow="ellipsis",
                             max_width=32 if roomy else 24)
            table.add_column("status", no_wrap=True, min_width=14)  # never dropped
            table.add_column("value", no_wrap=True, overflow="ellipsis", ratio=3)
            table.add_column("threshold", no_wrap=not roomy,
                             overflow="fold" if roomy else "ellipsis", ratio=2)
            for gate in gates:
                symbol, style = GATE_STYLE.get(gate["status"], ("?", ""))
                table.add_row(Text(gate["name"]), Text(f"{symbol} {gate['status']}", style=style),
                              Text(gate["value"]), Text(gate["threshold"], style="dim"))
            parts.append(table)
        if state.active:
            keys = ("m: adopt with a new guard   X: abort   r: roll back" if not view.guarded
                    else "p: pause/resume   P: promote   X: abort   r: roll back")
            parts.append(Text(keys, style="dim"))
        self.show(Group(*parts))
