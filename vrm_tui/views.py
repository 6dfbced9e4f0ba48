"""What the faces may see: the console's typed, frozen views and the pure functions that word
them, in one deliberate public surface (httpx's `__all__`).

`cli.py` and `tui/` import nothing below the console (an import-linter contract says so):
every value a face shows comes from here or from `vrm_tui.console`, so a type that moves
between the layers below moves here once. The views are frozen dataclasses computed by the
layers that own the data (status, telemetry, migrate, parity, bench, validate); this module
only names them for the faces. It sits beside the console, not inside it, so `vrm rollback`
(which imports the console) never pays for telemetry at start.
"""

from __future__ import annotations

from vrm_tui.bench.engine import Result as BenchResult
from vrm_tui.bench.engine import install_uvloop
from vrm_tui.bench.modes import STRESS_CAP
from vrm_tui.bench.modes import Options as BenchOptions
from vrm_tui.bench.report import plot as bench_plot
from vrm_tui.bench.report import table as bench_table
from vrm_tui.fleet import FleetService, RollbackOutcome
from vrm_tui.fleet.service import FleetRollback, FleetStatus, HostRollback
from vrm_tui.fleet.store import Desired as FleetDesired
from vrm_tui.fleet.store import HostReport
from vrm_tui.journal import Record
from vrm_tui.migrate.plan import SHADOW
from vrm_tui.migrate.state import MigrationState
from vrm_tui.migrate.timeline import lines as migration_lines
from vrm_tui.migrate.timeline import next_line, step_outcomes
from vrm_tui.parity.report import ParityReport
from vrm_tui.parity.report import lines as parity_lines
from vrm_tui.status import HEALTH_SYMBOL, ServiceStatus, StackStatus
from vrm_tui.telemetry.accesslog import RECENT_S, WINDOWS, BackendWindow, TrafficSnapshot
from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.telemetry.gpu import GpuReport
from vrm_tui.telemetry.health import Probe
from vrm_tui.telemetry.logformat import format_line
from vrm_tui.telemetry.prometheus import Alert
from vrm_tui.telemetry.realtime import Now, failing_for_s, judge, words
from vrm_tui.validate import Check as ValidationRow
from vrm_tui.validate import as_dicts as validation_dicts
from vrm_tui.validate import table as validation_table

HealthView = ServiceStatus
"""One service's state and health word, as the Health pane and `vrm status` show it."""
LatencyView = TrafficSnapshot
"""Per backend, what the proxy's requests did over a window (the Latency and Split panes)."""
FleetView = FleetStatus
"""The fleet from this host: desired split, each live host's report, why etcd was unreadable."""

__all__ = [
    "HEALTH_SYMBOL", "RECENT_S", "SHADOW", "STRESS_CAP", "WINDOWS", "Alert", "BackendWindow",
    "BenchOptions", "BenchResult", "FleetDesired", "FleetRollback", "FleetService", "FleetView",
    "GpuReport", "HealthView", "HostReport", "HostRollback", "LatencyView", "MigrationState",
    "Now", "ParityReport", "Probe", "Record", "RollbackOutcome",
    "ServiceStatus", "StackStatus", "TrafficSnapshot", "ValidationRow", "VramReading",
    "bench_plot", "bench_table", "failing_for_s", "format_line", "install_uvloop", "judge",
    "migration_lines", "next_line", "parity_lines", "step_outcomes", "validation_dicts",
    "validation_table", "words",
]
