"""Parity pane: does rust answer like typescript on mirrored live requests?

Hidden until parity has been switched on (or has counts to show), so a deployment that never
mirrors sees the dashboard it always had. State is a word as well as a colour.
"""

from __future__ import annotations

from rich.console import Group
from rich.text import Text

from vrm_tui.core.units import percent
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import ParityReport

TOP = 3


class ParityPane(Pane):
    DEFAULT_CSS = """
    ParityPane {
        display: none;
        height: auto;
        max-height: 8;
        border: round $primary;
        padding: 0 1;
    }
    """

    def on_mount(self) -> None:
        self.border_title = "Parity (rust vs typescript)"
        self.border_subtitle = "d: diffs"

    def show_report(self, report: ParityReport) -> None:
        total = report.total
        self.display = report.on or total.compared > 0 or report.live is not None
        if not self.display:
            return
        low, high = total.interval
        if report.on:
            state = Text(f"● mirroring {report.sample:g}%", style="green")
        else:
            state = Text("○ off", style="dim")
        if report.on and report.live is None:
            state.append("  ✗ comparator not running", style="red bold")
        state.append(f"   sampled {report.results.sampled}  compared {total.compared}  "
                     f"dropped {report.results.dropped}  failed {report.results.failed}")
        verdict = Text("✗ MISMATCH " if total.mismatched else "✓ no mismatch ",
                       style="red bold" if total.mismatched else "green")
        verdict.append(f"{percent(total.mismatch_rate, 2)} "
                       f"(95% CI {percent(low, 2)}–{percent(high, 2)}) · "
                       f"any difference incl. noise {percent(total.raw_difference_rate, 2)}")
        lines = [state, verdict]
        routes = report.results.ranked_routes()
        if routes:  # each route is judged on its own: the worst first
            lines.append(Text("  routes: " + " · ".join(
                f"{endpoint} {percent(counts.mismatch_rate, 2)} "
                f"({counts.mismatched}/{counts.compared})" for endpoint, counts in routes),
                no_wrap=True, overflow="ellipsis"))
        for endpoint, path, counts in report.results.top_paths(TOP):
            lines.append(Text(f"  {percent(counts.mismatch_rate, 2):>7}  {path}  ({endpoint}, "
                              f"{counts.mismatched}/{counts.compared})"))
        self.show(Group(*lines))

    def show_error(self, error: str) -> None:
        self.show(Text(f"✗ {error}", style="yellow"))
