"""Snapshots of the dashboard at 80x24 and 120x40, fed fixed data (no polling, no clock).

Update after an intended change with: scripts/test.sh tests/tui --snapshot-update
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.app import App
from textual.pilot import Pilot

from vrm_tui import settings as settings_mod
from vrm_tui.console import Console, MigrationView
from vrm_tui.core.backend import Backend
from vrm_tui.core.split import Split
from vrm_tui.journal import Record
from vrm_tui.migrate.plan import load as load_plan
from vrm_tui.migrate.state import MigrationState
from vrm_tui.stack.runtime import ServiceState
from vrm_tui.status import ServiceStatus, StackStatus
from vrm_tui.telemetry.accesslog import BackendWindow, TrafficSnapshot
from vrm_tui.telemetry.backend_metrics import VramReading
from vrm_tui.telemetry.gpu import Gpu, GpuProcess, GpuReport
from vrm_tui.telemetry.health import Probe
from vrm_tui.telemetry.prometheus import Alert
from vrm_tui.traffic.served import Served
from vrm_tui.tui.app import VrmApp
from vrm_tui.tui.messages import (
    AlertsUpdate,
    GpuUpdate,
    JournalUpdate,
    MigrationUpdate,
    StatusUpdate,
    TrafficUpdate,
    VramUpdate,
)
from vrm_tui.tui.widgets.migration import MigrationPane

SnapCompare = Callable[..., bool]  # pytest-textual-snapshot declares it too narrowly


def _status(hanging: bool = False) -> StackStatus:
    def svc(name: str, healthy: bool, latency: float | None, error: str = "") -> ServiceStatus:
        return ServiceStatus(ServiceState(name, "running", 100, "http://127.0.0.1:3001"),
                             Probe("u", healthy, 200 if healthy else None, latency, error=error,
                                   timed_out=hanging and not healthy))

    return StackStatus("local", "/srv/vrm/.vrm", Served(7, Split(30), 1), "", Split(30), [
        ServiceStatus(ServiceState("vision-proxy", "running", 99),
                      Probe("http://127.0.0.1:3000/vrm/served", True, 200, None)),
        svc("vision-manager-rust", False, None,
            "no answer within 1s" if hanging else "connection refused"),
        svc("vision-manager-typescript", True, 2.5),
    ])


def _window(backend: str, p50: float, p95: float, retried: int,
            failing_slots: int = 0) -> BackendWindow:
    """Steady traffic; the last `failing_slots` slots (2 s each) had no success at all."""
    series = [p95 * (0.5 + (i % 7) / 10) for i in range(30)]
    ok = [60] * (30 - failing_slots) + [0] * failing_slots
    p50s = [v / 2 if n else 0.0 for v, n in zip(series, ok, strict=True)]
    p95s = [v if n else 0.0 for v, n in zip(series, ok, strict=True)]
    errors = retried + 2 + 60 * failing_slots
    recent_errors = min(300, 30 * 2 * failing_slots)  # the last 10 s
    return BackendWindow(backend, 1800, 30.0, errors, retried, errors / 1800,
                         p50, p95, p50s, p95s, [30.0] * 30, ok, 2.0,
                         recent_requests=300, recent_errors=recent_errors,
                         client_requests=1800, client_errors=errors - retried)


def _feed(app: App[None], hanging: bool = False) -> None:
    app.post_message(StatusUpdate(_status(hanging)))
    app.post_message(TrafficUpdate(TrafficSnapshot(
        "1m", {Backend.RUST: _window("rust", 8.0, 21.0, 5, failing_slots=6),
               Backend.TYPESCRIPT: _window("typescript", 31.0, 88.0, 0)}, 29.6, 3600, 3600, 0)))
    app.post_message(AlertsUpdate([
        Alert("HighErrorRate", "firing", "warning", "rust error rate is 6.2% (> 5%)",
              "2026-11-26T09:01:30Z", {"backend": "rust"}),
        Alert("HighErrorRateCritical", "pending", "critical", "rust error rate is 16% (> 15%)",
              "2026-11-26T09:02:30Z", {"backend": "rust"}),
    ]))
    app.post_message(GpuUpdate(GpuReport((Gpu(0, "NVIDIA H100 80GB HBM3", 24.5, 79.6, 63, (
        GpuProcess(101, 6.6, "rust"), GpuProcess(102, 17.9, "typescript"))),),
        driver="580.159.04")))
    app.post_message(VramUpdate([VramReading("rust", 6.1, 20.0, 3),
                                 VramReading("typescript", 18.4, 20.0, 5)]))
    app.post_message(JournalUpdate([
        Record(action="up", result="ok", operator="alice@192.0.2.7", host="gpu1",
               time="2026-11-26T09:00:00.000+00:00", duration_ms=512.0,
               detail="started vision-proxy"),
        Record(action="deploy", result="ok", operator="alice@192.0.2.7", host="gpu1",
               time="2026-11-26T09:01:00.000+00:00", from_={"rust": 10, "typescript": 90},
               to={"rust": 30, "typescript": 70}, duration_ms=121.0,
               detail="generation 7 verified"),
        Record(action="set-split", result="failed", operator="bob", host="gpu1",
               time="2026-11-26T09:02:00.000+00:00", from_={"rust": 30, "typescript": 70},
               to={"rust": 40, "typescript": 60}, duration_ms=33.0,
               detail="nginx -t rejected the new config"),
    ]))


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(time, "time", lambda: 1795683780.0)  # 2026-11-26T09:03:00Z


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)],
                         ids=["80x24", "120x40", "200x60"])
@pytest.mark.parametrize("read_only", [False, True], ids=["operator", "observer"])
def test_dashboard(snap_compare: SnapCompare, fixed_clock: None, tmp_path: Path,
                   size: tuple[int, int], read_only: bool) -> None:
    settings = settings_mod.load(environ={}, deploy_dir=tmp_path)
    app = VrmApp(Console(settings), read_only=read_only, live=False)

    async def run_before(pilot: Pilot[None]) -> None:
        _feed(pilot.app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def _app(tmp_path: Path, read_only: bool = False) -> VrmApp:
    return VrmApp(Console(settings_mod.load(environ={}, deploy_dir=tmp_path)), read_only=read_only,
                  live=False)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("read_only", [False, True], ids=["operator", "observer"])
def test_help(snap_compare: SnapCompare, fixed_clock: None, tmp_path: Path, size: tuple[int, int],
              read_only: bool) -> None:
    assert snap_compare(_app(tmp_path, read_only), terminal_size=size,
                        press=["question_mark"])


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_weight_increase_asks_again(snap_compare: SnapCompare, fixed_clock: None, tmp_path: Path,
                                    size: tuple[int, int]) -> None:
    assert snap_compare(_app(tmp_path), terminal_size=size, press=["w", "4", "5", "enter"])


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("key", ["plus", "b", "l"], ids=["confirm", "bench-asks", "logs"])
def test_modal(snap_compare: SnapCompare, fixed_clock: None, tmp_path: Path, size: tuple[int, int],
               key: str) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        pilot.app.post_message(StatusUpdate(_status()))
        await pilot.pause()
        await pilot.press(key)
        await pilot.pause()

    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_dashboard_rust_hanging(snap_compare: SnapCompare, fixed_clock: None, tmp_path: Path,
                                size: tuple[int, int]) -> None:
    """A hang: the probe timed out; the pane says hanging (word and symbol), not improving."""
    async def run_before(pilot: Pilot[None]) -> None:
        _feed(pilot.app, hanging=True)
        await pilot.pause()

    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=run_before)


def _migration(guarded: bool, finished: bool = False) -> MigrationView:
    now = 1795683780.0
    state = MigrationState(
        plan=load_plan(steps="shadow,10,50,100", bake="5m", gate_interval="10s").to_dict(),
        id="4f2a9c1e", step=2, phase="baking", step_started=now - 120, baked_s=0.0,
        bake_since=now - 120, started=now - 900, started_by="alice@10.0.0.7",
        history=[{"step": 0, "target": 0, "outcome": "passed", "at": now - 600, "detail": ""},
                 {"step": 1, "target": 10, "outcome": "promoted", "at": now - 120,
                  "detail": "promoted by bob (gates inconclusive)"}],
        verdict={"status": "inconclusive", "gates": [
            {"name": "rust error rate", "status": "pass", "value": "3/1203 (0.2%) vs "
             "typescript 2/1187 (0.2%)", "threshold": "fail if above typescript or 15%"},
            {"name": "latency vs typescript", "status": "inconclusive",
             "value": "41 rust / 38 typescript samples in 2 comparable strata",
             "threshold": "need 50 each"},
            {"name": "rust answers like typescript", "status": "pass",
             "value": "0/512 (0.0%)", "threshold": "fail if mismatches above 1% at 99%"}]},
        updated=now - 60, owner_pid=4242, owner_ticks=1)
    if finished:  # the last step held its bake: done, one line on the dashboard
        state.step, state.phase, state.reason = 3, "done", "all steps passed their gates"
        state.history += [{"step": 2, "target": 50, "outcome": "passed", "at": now - 60,
                           "detail": ""},
                          {"step": 3, "target": 100, "outcome": "passed", "at": now - 30,
                           "detail": ""}]
    return MigrationView(state, guarded)


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 60)],
                         ids=["80x24", "120x40", "200x60"])
@pytest.mark.parametrize(("guarded", "finished"), [(True, False), (False, False), (True, True)],
                         ids=["guarded", "unguarded", "finished"])
def test_migration_pane(snap_compare: SnapCompare, fixed_clock: None, tmp_path: Path,
                        size: tuple[int, int], guarded: bool, finished: bool) -> None:
    """The timeline, what happens next, a promoted step said as such, and UNGUARDED; a
    finished migration is one line, so Parity and the Journal stay on screen (issue 22)."""
    async def run_before(pilot: Pilot[None]) -> None:
        _feed(pilot.app)
        pilot.app.post_message(MigrationUpdate(_migration(guarded, finished)))
        await pilot.pause()
        pilot.app.query_one(MigrationPane).scroll_visible(animate=False)
        await pilot.pause()

    assert snap_compare(_app(tmp_path), terminal_size=size, run_before=run_before)
