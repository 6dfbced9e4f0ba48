"""Latency pane: per backend what requests do now (ok / errors / failing / hanging), p50/p95
sparklines, request rate, and error rates over 10 s, the window, and as clients saw them.

Errors include failed attempts nginx retried onto the other backend, and say so. A slot
with no successful request is a gap in the sparkline, and a headline whose recent slots had
only failures says so instead of showing older successes' latency as current. A hang, which
the access log cannot see until requests end, shows from the health probe and the requests
nginx has waiting on that backend (`telemetry.realtime.judge`); their number is on each
backend's line whenever nginx counts them.
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.text import Text
from textual.reactive import reactive

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.units import percent
from vrm_tui.tui.widgets.common import ago, ms, scale, sparkline, state_text
from vrm_tui.tui.widgets.pane import Pane
from vrm_tui.views import (
    RECENT_S,
    BackendWindow,
    Now,
    Probe,
    StackStatus,
    TrafficSnapshot,
    failing_for_s,
    judge,
)


def measured(stats: BackendWindow, series: list[float]) -> list[float | None]:
    """A latency series with `None` where the slot had no successful request."""
    if len(stats.ok_series) != len(series):
        return list(series)
    return [value if ok else None for value, ok in zip(series, stats.ok_series, strict=True)]


class LatencyPane(Pane):
    compact: reactive[bool] = reactive(False, init=False)
    """Set by the app on resize: fewer lines for small terminals."""

    def watch_compact(self) -> None:
        if self._snapshot is not None or self._error:  # redraw what is shown for the new size
            self.refresh_view()

    def on_mount(self) -> None:
        self.border_title = "Latency"
        self._snapshot: TrafficSnapshot | None = None
        self._error = ""
        self._probes: dict[str, Probe | None] = {}
        self._degraded: dict[str, str] = {}  # backend -> why its probe is above its baseline
        self._shares: dict[str, float] = {}
        # Requests nginx has waiting on each backend (/vrm/served); None: it does not count.
        self._waiting: dict[str, int] | None = None
        self._hung: set[str] = set()
        self.verdicts: dict[str, Now] = {}  # backend -> what its requests do now, as shown
        self._history: dict[str, dict[str, list[float | None]]] = {}
        self._history_at: float | None = None  # when Prometheus last answered
        self._history_error = ""  # why it did not since
        self.show(Text("waiting for traffic statistics…", style="dim"))

    def show_traffic(self, snapshot: TrafficSnapshot) -> None:
        self._snapshot, self._error = snapshot, ""
        self.refresh_view()

    def show_error(self, error: str) -> None:
        self._snapshot, self._error = None, error
        self.refresh_view()

    def show_history(self, history: dict[str, dict[str, list[float | None]]]) -> None:
        """The last 15 minutes from Prometheus: shown beside the live window (a step without
        a value is a gap)."""
        self._history, self._history_at, self._history_error = history, time.time(), ""
        self.refresh_view()

    def history_failed(self, error: str) -> None:
        """Prometheus did not answer: the 15m lines stay, saying how old they are."""
        self._history_error = error.split(": ", 1)[-1]
        self.refresh_view()

    def _history_note(self) -> str:
        if not self._history_error:
            return "p95 from Prometheus"
        return f"STALE, {ago(self._history_at)} (Prometheus: {self._history_error})"

    def show_status(self, status: StackStatus) -> None:
        """Probes and the served split: a probe that times out shows a hang at once."""
        for service in status.services:
            backend = services.BACKENDS.get(service.state.name)
            if backend is not None:
                self._probes[backend] = service.probe
                health = service.health
                self._degraded[backend] = health.reason if health.word == "degraded" else ""
        flight = status.served.in_flight if status.served is not None else None
        self._waiting = None if flight is None else {b: flight.of(b) for b in Backend}
        if status.served is not None:
            split = status.served.split
            self._shares = {Backend.RUST: split.rust / 100,
                            Backend.TYPESCRIPT: split.typescript / 100}
        # Redraw at once only when a verdict may change (a hang); else the next traffic poll
        # draws it (a redraw per poll costs CPU at 300 req/s).
        hung = {b for b, found in self._probes.items() if found is not None and found.timed_out}
        if hung != self._hung:
            self._hung = hung
            self.refresh_view()

    def refresh_view(self) -> None:
        if self._snapshot is None:
            self.show(Text(f"✗ access log unavailable: {self._error}", style="red")
                        if self._error else Text("waiting for traffic statistics…", style="dim"))
            return
        snap = self._snapshot
        self.border_title = f"Latency · window {snap.window} (t: switch)"
        width = max(10, min(40, self.size.width - 26)) if self.size.width else 30
        lines: list[Text] = []
        for backend, stats in snap.backends.items():
            probe = self._probes.get(backend)
            failing = failing_for_s(stats)
            waiting = self._waiting.get(backend) if self._waiting is not None else None
            now = judge(stats, snap.at, probe, snap.in_flight, self._shares.get(backend),
                        failing, waiting, self._degraded.get(backend, ""))
            self.verdicts[backend] = now
            head = Text(f"{backend:11}", style="bold")
            head.append_text(state_text(now.word))
            head.append(" " * max(1, 10 - len(now.word)))
            if stats.requests == 0:
                head.append(f"no traffic in {snap.window}; probe "
                            f"{ms(probe.latency_ms if probe else None)}", style="dim")
                if waiting is not None:
                    head.append(f" · {waiting} in flight", style="dim")
                lines.append(head)
                if now.word == "hanging":
                    lines.append(Text(f"  ⧖ {now.reason}", style="red bold"))
                continue
            if now.word in ("failing", "hanging") or stats.p50_ms is None:
                head.append(f"p50 {'-':>6} p95 {'-':>6} ")  # old successes are not "now"
            else:
                head.append(f"p50 {ms(stats.p50_ms):>6} p95 {ms(stats.p95_ms):>6} ")
            head.append(f"{stats.rate:6.1f} req/s")
            lines.append(head)
            lines.append(_error_line(stats, snap.window, now, waiting))
            if now.word == "hanging":
                lines.append(Text(f"  ⧖ HANGING: {now.reason}", style="red bold"))
            elif now.word == "slow":
                lines.append(Text(f"  ◔ SLOW: {now.reason}", style="yellow"))
            elif stats.p50_ms is None:
                lines.append(Text(f"  ✗ no successful requests in {snap.window}",
                                  style="red bold"))
            elif failing:
                notice = Text(f"  ✗ no successful requests in last {failing:.0f} s",
                              style="red bold")
                notice.append(f" (before: p95 {ms(stats.p95_ms)})", style="dim")
                lines.append(notice)
            if stats.retried:
                other = Backend(backend).other
                lines.append(Text(f"  ⚠ {stats.retried} {backend} failures hidden: nginx "
                                  f"retried them on {other}", style="red"))
            p95 = measured(stats, stats.p95_series)
            lines.append(Text(f"  p95 {sparkline(p95, width)} {scale(p95, width)}"))
            if not self.compact:
                p50 = measured(stats, stats.p50_series)
                lines.append(Text(f"  p50 {sparkline(p50, width)} {scale(p50, width)}"))
                past: list[float | None] = list(self._history.get(backend, {}).get("p95", []))
                if past:
                    lines.append(Text(f"  15m {sparkline(past, width)} {scale(past, width)} "
                                      f"{self._history_note()}",
                                      style="yellow" if self._history_error else "dim"))
        if snap.in_flight and self._waiting is None:  # nginx's, all backends together
            lines.append(Text(f"{snap.in_flight} requests in flight at nginx now",
                              style="yellow" if snap.in_flight > 10 else "dim"))
        if snap.skipped_bytes:
            lines.append(Text(f"(skipped {snap.skipped_bytes} bytes of log to keep up)",
                              style="yellow"))
        self.show(Group(*lines))


def _error_line(stats: BackendWindow, window: str, now: Now, waiting: int | None) -> Text:
    """Errors now (10 s), over the window, and as clients saw them after nginx's retries; then
    the requests nginx has waiting on the backend, which the log cannot count yet (on this
    line: the head line would wrap at 120 columns)."""
    line = Text("  err ")
    recent = stats.recent_error_rate
    if recent is None:
        recent_text = "none answered" if now.word == "hanging" else "-"
    else:
        recent_text = percent(recent)
    line.append(f"{RECENT_S}s {recent_text}", style="red bold" if now.word in (
        "failing", "hanging") else "red" if stats.recent_errors else "")
    line.append(f" · {window} {percent(stats.error_rate)}", style="red" if stats.errors else "")
    client = stats.client_error_rate
    line.append(f" · clients {percent(client)}", style="red" if stats.client_errors else "")
    if now.word == "hanging":  # the log holds only requests that ended, not those waiting
        line.append(" + those still waiting" if waiting is None else f" + {waiting} in flight",
                    style="red bold")
    elif waiting is not None:
        line.append(f" · {waiting} in flight", style="yellow" if waiting else "dim")
    return line
