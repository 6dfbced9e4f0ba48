"""The benchmark view: a quick rust-vs-typescript comparison with live progress.

The run happens in a thread worker with its own event loop; progress arrives as messages.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Label, ProgressBar, Static

from vrm_tui.bench import modes, report
from vrm_tui.bench.engine import Result
from vrm_tui.console import Console


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


def histogram_text(buckets: list[tuple[float, int]], width: int = 40) -> Text:
    top = max((count for _, count in buckets), default=0)
    text = Text()
    for upper, count in buckets:
        if count:
            bar = "█" * max(1, round(count / top * width)) if top else ""
            text.append(f"{upper:9.1f} ms {bar} {count}\n")
    return text


class BenchScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,b", "close", "Close", id="bench.close",
                        tooltip="Stop the run (if any) and go back")]

    def __init__(self, console: Console, seconds: float = 5.0) -> None:
        super().__init__()
        self.vrm = console
        self.seconds = seconds
        self.stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Label("benchmark: rust vs typescript, each directly (compare mode)",
                    id="bench-title")
        yield ProgressBar(total=1.0, show_eta=False, id="bench-progress")
        yield Static("", id="bench-live")
        yield Static("", id="bench-result")

    def on_mount(self) -> None:
        self._run()

    @work(thread=True, exclusive=True, group="bench")
    def _run(self) -> None:
        stop_async = asyncio.Event()

        def progress(phase: str, result: Result, fraction: float) -> None:
            if self.stop.is_set():
                stop_async.set()
            self.post_message(BenchProgress(
                phase, result.requests, result.rps, dict(result.statuses),
                result.latency.buckets_ms(12), result.latency.percentile_ms(50), fraction))

        try:
            run = self.vrm.run_benchmark(
                "compare", modes.Options(concurrency=8, duration=self.seconds), progress,
                stop_async)
            self.post_message(BenchDone(f"{report.table(run.reports[0])}\n"
                                        f"reports in {run.folder}"))
        except Exception as exc:  # shown, never raised into the UI
            self.post_message(BenchDone("", f"{type(exc).__name__}: {exc}"))

    @on(BenchProgress)
    def _progress(self, message: BenchProgress) -> None:
        self.query_one(ProgressBar).update(progress=message.fraction)
        p50 = f"{message.p50:.1f} ms" if message.p50 is not None else "-"
        head = Text(f"{message.phase}: {message.requests} requests, {message.rps:.0f} req/s, "
                    f"p50 {p50}, status {message.statuses}\n", style="bold")
        self.query_one("#bench-live", Static).update(
            Group(head, histogram_text(message.buckets)))

    @on(BenchDone)
    def _done(self, message: BenchDone) -> None:
        result = self.query_one("#bench-result", Static)
        if message.error:
            result.update(Text(f"✗ benchmark failed: {message.error}", style="red"))
        else:
            result.update(Text(message.text))

    def action_close(self) -> None:
        self.stop.set()
        self.dismiss(None)
