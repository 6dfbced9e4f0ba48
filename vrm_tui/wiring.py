"""The composition root: one deployment's parts, built once, in one place.

The runtime, the journal, the traffic controller, parity control, the migration store, the
probe baselines and the access-log source are made here and nowhere else. The console (both
faces) and the migration guard process start from a `Wiring`, so the guard's runner drives
the same controller and parity control as a migration the console starts, and a new part
(the fleet agent) is wired once, here.

`python -m vrm_tui.wiring guard ...` is the guard process's entry (`migrate.guard.spawn`
starts it): the guard is built from this root like the console.
"""

from __future__ import annotations

import argparse
import sys
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from vrm_tui.journal import Journal
from vrm_tui.settings import Settings
from vrm_tui.stack import lifecycle
from vrm_tui.stack.runtime import Runtime
from vrm_tui.traffic.controller import TrafficController

if TYPE_CHECKING:  # built when first asked for: `vrm rollback` pays only for the controller
    from vrm_tui.migrate.runner import Runner
    from vrm_tui.migrate.state import StateStore
    from vrm_tui.parity.control import ParityControl
    from vrm_tui.telemetry.accesslog import AccessLogSource
    from vrm_tui.telemetry.health import Baselines

__all__ = ["Wiring", "main"]


class Wiring:
    """One deployment's parts. The controller and journal are made at once (rollback needs
    nothing else); the rest on first use, once."""

    def __init__(self, settings: Settings, runtime: Runtime | None = None) -> None:
        self.settings = settings
        self.runtime = runtime or lifecycle.runtime_for(settings)
        self.journal = Journal(settings.paths.journal)
        self.controller = TrafficController(settings, self.runtime, self.journal)

    @cached_property
    def parity(self) -> ParityControl:
        from vrm_tui.parity.control import ParityControl

        return ParityControl(self.settings, self.runtime, self.controller, self.journal)

    @cached_property
    def migrations(self) -> StateStore:
        from vrm_tui.migrate.state import StateStore

        return StateStore(self.settings.state_dir)

    @cached_property
    def baselines(self) -> Baselines:
        """Each service's recent probe latencies (what "degraded" is relative to)."""
        from vrm_tui.telemetry.health import Baselines

        return Baselines()

    def runner(self, stop: threading.Event | None = None) -> Runner:
        """A migration runner on this controller, with parity (its shadow step and gate)."""
        from vrm_tui.migrate.runner import Runner

        return Runner(self.controller, stop=stop, parity=self.parity)

    def traffic_source(self, backfill: bool = True) -> AccessLogSource:
        """A tail of the proxy's access log with per-backend statistics."""
        from vrm_tui.telemetry import stub_status
        from vrm_tui.telemetry.accesslog import AccessLogSource

        status_url = f"http://127.0.0.1:{self.settings.proxy_status_port}{stub_status.PATH}"
        return AccessLogSource(self.runtime.access_log(), self.settings.backend_addresses,
                               backfill=backfill, status_url=status_url)


def main(argv: list[str] | None = None) -> int:
    """A vrm process other than the faces, built from the root: `guard` (the migration
    guard, detached by `migrate.guard.spawn`)."""
    from vrm_tui.migrate import guard
    from vrm_tui.settings import load as load_settings

    parser = argparse.ArgumentParser(prog="python -m vrm_tui.wiring")
    parser.add_argument("process", choices=["guard"])
    parser.add_argument("--deploy-dir", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--restart-step", action="store_true")
    args = parser.parse_args(argv)
    settings = load_settings({"VRM_STATE_DIR": str(args.state_dir)}, deploy_dir=args.deploy_dir)
    # Built once the guard holds its lock and has found a migration to run.
    return guard.serve(settings, lambda stop: Wiring(settings).runner(stop),
                       restart_step=args.restart_step)


if __name__ == "__main__":
    sys.exit(main())
