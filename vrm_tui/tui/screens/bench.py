"""The benchmark view: a quick rust-vs-typescript comparison with live progress.

It asks first: the run loads the live backends directly. The run happens in a thread worker
with its own event loop; progress arrives as messages. Each backend's histogram has its own
marker, so the two series stay apart without colour (NO_COLOR).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import ClassVar

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Label, ProgressBar, Static

from vrm_tui.console import Console
from vrm_tui.tui.screens.modal import VrmModal
from vrm_tui.views import BenchOptions, BenchResult

MARKERS = {"rust": "█", "typescript": "▒"}
CONCURRENCY = 8


@dataclass
class BenchProgress(Message):
    phase: str
    requests: int
    rps: float
    statuses: dict[str, int]
    buckets: list[tuple[float, int]]
    p50: float | None
    fraction: float


@dataclass
class BenchDone(Message):
    text: str
    error: str = ""


def series_of(phase: str) -> str:
    """"compare rust" -> "rust": which backend a progress phase measures."""
    return phase.rsplit(" ", 1)[-1]


def histogram_text(buckets: list[tuple[float, int]], width: int = 40,
                   marker: str = "█") -> Text:
    top = max((count for _, count in buckets), default=0)
    text = Text()
    for upper, count in buckets:
        if count:
            bar = marker * max(1, round(count / top * width)) if top else ""
            text.append(f"{upper:9.1f} ms {bar} {count}\n")
    return text


class BenchScreen(VrmModal[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y,enter", "start", "Start", id="bench.start",
                tooltip="Load both backends now (asked first: they are live)"),
        Binding("escape,q,b,n", "close", "Close", id="bench.close",
                tooltip="Stop the run (if any) and go back"),
    ]

    def __init__(self, console: Console, seconds: float = 5.0) -> None:
        super().__init__()
        self.vrm = console
        self.seconds = seconds
        self.stop = threading.Event()
        self.started = False
        self.series: dict[str, BenchProgress] = {}

    def compose(self) -> ComposeResult:
        yield Label("benchmark: rust vs typescript, each directly (compare mode)",
                    id="bench-title")
        yield Static(Text(
            f"This loads the LIVE backends: {CONCURRENCY} connections to rust, then to "
            f"typescript, {self.seconds:g} s each, bypassing the split; users may see slower "
            "answers meanwhile.\ny / enter: start    n / esc: cancel    r: roll back",
            style="bold"), id="bench-ask")
        yield ProgressBar(total=1.0, show_eta=False, id="bench-progress")
        with VerticalScroll(id="bench-body"):  # a small terminal scrolls to the verdict
            yield Static("", id="bench-live")
            yield Static("", id="bench-result")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#bench-body").focus()  # arrows, page keys, home / end scroll it

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start" and self.started:
            return False  # one run per opening; the footer stops offering it
        return super().check_action(action, parameters)

    def action_start(self) -> None:
        if self.started:
            return
        self.started = True
        self.query_one("#bench-ask", Static).update(Text(
            "running: esc stops it    r: roll back", style="bold"))
        self.refresh_bindings()
        self._run()

    @work(thread=True, exclusive=True, group="bench")
    def _run(self) -> None:
        stop_async = asyncio.Event()

        def progress(phase: str, result: BenchResult, fraction: float) -> None:
            if self.stop.is_set():
                stop_async.set()
            self.post_message(BenchProgress(
                phase, result.requests, result.rps, dict(result.statuses),
                result.latency.buckets_ms(12), result.latency.percentile_ms(50), fraction))

        try:
            run = self.vrm.run_benchmark(
                "compare", BenchOptions(concurrency=CONCURRENCY, duration=self.seconds),
                progress, stop_async)
            self.post_message(BenchDone(f"{run.reports[0].table()}\n"
                                        f"reports in {run.folder}"))
        except Exception as exc:  # shown, never raised into the UI
            self.post_message(BenchDone("", f"{type(exc).__name__}: {exc}"))

    @on(BenchProgress)
    def _progress(self, message: BenchProgress) -> None:
        self.query_one(ProgressBar).update(progress=message.fraction)
        self.series[series_of(message.phase)] = message
        parts: list[Text] = []
        for name, seen in self.series.items():
            marker = MARKERS.get(name, "#")
            p50 = f"{seen.p50:.1f} ms" if seen.p50 is not None else "-"
            parts.append(Text(f"{marker} {seen.phase}: {seen.requests} requests, "
                              f"{seen.rps:.0f} req/s, p50 {p50}, status {seen.statuses}",
                              style="bold"))
            parts.append(histogram_text(seen.buckets, marker=marker))
        self.query_one("#bench-live", Static).update(Group(*parts))

    @on(BenchDone)
    def _done(self, message: BenchDone) -> None:
        result = self.query_one("#bench-result", Static)
        if message.error:
            result.update(Text(f"✗ benchmark failed: {message.error}", style="red"))
        else:
            result.update(Text(message.text))
        self.query_one("#bench-body", VerticalScroll).scroll_end(animate=False)  # the verdict

    def action_close(self) -> None:
        self.stop.set()
        self.dismiss(None)
