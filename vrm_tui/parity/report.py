"""What `vrm parity status|report`, the TUI pane and the parity gate read: one ParityReport.

Counts come from the comparator's results file (written every second), so a report works
whether or not the comparator still runs; the live `/status` adds queue depth when it does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from vrm_tui.core.units import percent
from vrm_tui.parity.results import Counts, ParityResults

__all__ = ["ParityReport", "lines"]


@dataclass(frozen=True)
class ParityReport:
    """Parity as every face shows it. `results` are cumulative since `results.since`; a gate
    judges the difference between two reports (compared and mismatched within its window)."""

    sample: float  # percent of balanced requests mirrored now (0: off)
    source: str  # "vrm parity on|off" or "PARITY_SAMPLE"
    routes: tuple[str, ...]
    results: ParityResults
    live: dict[str, Any] | None = None  # the comparator's /status; None when it is not running
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def on(self) -> bool:
        return self.sample > 0

    @property
    def total(self) -> Counts:
        return self.results.total()

    def gate_counts(self) -> dict[str, Any]:
        """What the parity gate judges, cumulative (a step judges the change since its start):
        per route `[compared, mismatched]`, and shadow calls that got no answer."""
        return {"routes": {e: [c.compared, c.mismatched]
                           for e, c in sorted(self.results.endpoints.items())},
                "unanswered": self.results.failed}

    def as_dict(self, top: int = 20) -> dict[str, Any]:
        total = self.total
        low, high = total.interval
        return {
            "sample": self.sample, "source": self.source, "routes": list(self.routes),
            "comparator": "running" if self.live is not None else "stopped",
            "queue_depth": (self.live or {}).get("queue_depth"),
            "since": self.results.since, "sampled": self.results.sampled,
            "compared": total.compared, "equal": total.equal, "noise": total.noise,
            "within_tolerance": total.within_tolerance, "mismatched": total.mismatched,
            "settled": total.settled, "mismatch_rate": total.mismatch_rate,
            "interval": [low, high],
            "raw_difference_rate": total.raw_difference_rate,
            "dropped": self.results.dropped, "failed": self.results.failed,
            "refused": self.results.refused,
            "endpoints": {e: _counts(c) for e, c in sorted(self.results.endpoints.items())},
            "by_route": [{"route": e, **_counts(c)} for e, c in self.results.ranked_routes()],
            "top_paths": [{"endpoint": e, "path": p, **_counts(c)}
                          for e, p, c in self.results.top_paths(top)],
            "paths": {e: {p: _counts(c) for p, c in sorted(paths.items())}
                      for e, paths in sorted(self.results.paths.items())},
            "examples": self.examples,
        }


def _counts(c: Counts) -> dict[str, Any]:
    low, high = c.interval
    return {"compared": c.compared, "equal": c.equal, "noise": c.noise,
            "within_tolerance": c.within_tolerance, "mismatched": c.mismatched,
            "settled": c.settled, "mismatch_rate": c.mismatch_rate, "interval": [low, high]}


def lines(report: ParityReport, top: int = 10) -> list[str]:
    """The report as text: state, totals with the 95% interval, routes worst first (each is
    judged on its own: a pooled rate dilutes one route's divergence by the others' traffic),
    top paths, examples."""
    total = report.total
    low, high = total.interval
    state = (f"on, {report.sample:g}% of balanced requests mirrored" if report.on else "off")
    since = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.results.since))
             if report.results.since else "never")
    comparator = ("running" + (f", queue {report.live.get('queue_depth', 0)}"
                               if report.live else "")) if report.live is not None else "stopped"
    out = [f"parity   {state} ({report.source}); comparator {comparator}",
           f"routes   {', '.join(report.routes) or '-'}",
           f"since    {since}: sampled {report.results.sampled}, compared {total.compared}, "
           f"dropped {report.results.dropped}, failed {report.results.failed}",
           f"mismatch {total.mismatched} of {total.compared} = {percent(total.mismatch_rate, 2)} "
           f"(95% CI {percent(low, 2)}-{percent(high, 2)}); any difference incl. noise "
           f"{percent(total.raw_difference_rate, 2)}"]
    routes = report.results.ranked_routes()
    if routes:
        out.append(f"{'ROUTE (worst first)':42} {'MISMATCH':>9} {'OF':>7}  95% CI")
        for endpoint, counts in routes:
            lo, hi = counts.interval
            out.append(f"{endpoint:42} {percent(counts.mismatch_rate, 2):>9} "
                       f"{counts.compared:>7}  {percent(lo, 2)}-{percent(hi, 2)}")
    rows = report.results.top_paths(top)
    if rows:
        out.append(f"{'ENDPOINT':32} {'PATH':44} {'MISMATCH':>9} {'OF':>7}  95% CI")
        for endpoint, path, counts in rows:
            lo, hi = counts.interval
            out.append(f"{endpoint:32} {path:44} {percent(counts.mismatch_rate, 2):>9} "
                       f"{counts.compared:>7}  {percent(lo, 2)}-{percent(hi, 2)}")
    else:
        out.append("no mismatched path")
    for example in report.examples:
        request = example["request"]
        out.append(f"-- example {request['method']} {request['path']} at "
                   f"{time.strftime('%H:%M:%S', time.localtime(example['time']))}: "
                   f"mismatched {', '.join(example['mismatched'])}")
        for diff in example["differences"]:
            if diff["outcome"] == "mismatch":
                out.append(f"   {diff['path']}: typescript {diff.get('primary', '<missing>')!r}"
                           f" / {diff.get('secondary', '<missing>')!r}, rust "
                           f"{diff.get('candidate', '<missing>')!r}")
    return out
