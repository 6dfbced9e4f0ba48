"""Typed messages that workers post to the app: results arrive as data, never as widget calls."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from vrm_tui.console import MigrationView
from vrm_tui.views import (
    Alert,
    FleetView,
    GpuReport,
    ParityReport,
    Record,
    StackStatus,
    TrafficSnapshot,
    VramReading,
    words,
)


class PaneData(Message, bubble=False):
    """What the polls read, for the dashboard's panes: the app hands it to its screen, where
    it stops (it must not bubble back up to the app)."""


@dataclass
class StatusUpdate(PaneData, bubble=False):
    status: StackStatus

    def headline(self) -> object:
        """What must show at once when it changes: each service's health word, the split."""
        served = self.status.served
        return (tuple((s.state.name, s.health.word) for s in self.status.services),
                served.split if served else None, bool(self.status.served_error))


@dataclass
class TrafficUpdate(PaneData, bubble=False):
    snapshot: TrafficSnapshot

    def headline(self) -> object:
        """What must show at once when it changes: each backend's state (ok, failing...)."""
        return words(self.snapshot)


@dataclass
class VramUpdate(PaneData, bubble=False):
    readings: list[VramReading]


@dataclass
class JournalUpdate(PaneData, bubble=False):
    records: list[Record]


@dataclass
class SourceFailed(PaneData, bubble=False):
    """A poll failed: the pane it feeds shows `error` instead of old numbers."""

    source: str
    error: str


@dataclass
class ActionDone(Message):
    """A write action finished (verified or failed), timed from the key press."""

    action: str
    ok: bool
    text: str
    elapsed_ms: float


@dataclass
class ActionProgress(Message):
    """A change in flight says how it goes (the fleet's rollback: this host, then the hosts
    still confirming); the action line shows it until the change's ActionDone."""

    text: str


class MigrationAsked(Message):
    """A migration was started or steered: read its state now, not at the next poll."""


@dataclass
class MigrationUpdate(PaneData, bubble=False):
    view: MigrationView | None


@dataclass
class AlertsUpdate(PaneData, bubble=False):
    alerts: list[Alert]


@dataclass
class HistoryUpdate(PaneData, bubble=False):
    """Per backend series from Prometheus ({"rust": {"p95": [...], ...}})."""

    history: dict[str, dict[str, list[float | None]]]  # None: a gap, never 0


@dataclass
class GpuUpdate(PaneData, bubble=False):
    report: GpuReport


@dataclass
class ParityUpdate(PaneData, bubble=False):
    report: ParityReport



@dataclass
class FleetUpdate(PaneData, bubble=False):
    view: FleetView

    def headline(self) -> object:
        """What must show at once when it changes: etcd readable, each host's mode and split."""
        return (self.view.unreachable, tuple(sorted(
            (h, r.mode, r.generation, r.rust) for h, r in self.view.hosts.items())))
