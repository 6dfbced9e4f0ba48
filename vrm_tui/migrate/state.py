"""The migration's persisted state and its control channel, both in the state dir.

State survives a lost SSH session: `vrm migrate resume` continues from it. Control requests
(pause, resume, promote, abort) are small files the running migration consumes, so the CLI
in another terminal and the TUI of a pairing partner can steer it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vrm_tui.core.names import ACTIVE_PHASES, CONTROLS, Control, Phase
from vrm_tui.core.paths import StateDir
from vrm_tui.migrate.plan import Plan
from vrm_tui.system.procs import start_ticks

ACTIVE = ACTIVE_PHASES


@dataclass
class MigrationState:
    plan: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    step: int = 0
    phase: Phase = "applying"
    step_started: float | None = None
    reason: str = ""
    verdict: dict[str, Any] | None = None
    baseline_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    owner_pid: int = field(default_factory=os.getpid)
    owner_ticks: int | None = field(default_factory=lambda: start_ticks(os.getpid()))

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE

    @property
    def plan_obj(self) -> Plan:
        return Plan.from_dict(self.plan)

    @property
    def target(self) -> int:
        return int(self.plan["steps"][self.step])

    def owner_alive(self) -> bool:
        return self.owner_ticks is not None and start_ticks(self.owner_pid) == self.owner_ticks

    def claim(self) -> None:
        """This process now runs the migration."""
        self.owner_pid, self.owner_ticks = os.getpid(), start_ticks(os.getpid())


class StateStore:
    def __init__(self, state_dir: Path) -> None:
        paths = StateDir(state_dir)
        self.path = paths.migration
        self.control_path = paths.migration_control

    def load(self) -> MigrationState | None:
        try:
            data = json.loads(self.path.read_text())
            return MigrationState(**data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.path} is unreadable ({exc}); move it aside to start over") \
                from None

    def save(self, state: MigrationState) -> None:
        state.updated = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "w") as handle:
            json.dump(asdict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def request(self, control: Control) -> None:
        if control not in CONTROLS:
            raise ValueError(f"unknown migration control {control!r}")
        tmp = self.control_path.with_suffix(".tmp")
        tmp.write_text(control)
        os.replace(tmp, self.control_path)

    def take_request(self) -> Control | None:
        try:
            control = self.control_path.read_text().strip()
            self.control_path.unlink()
        except FileNotFoundError:
            return None
        return control if control in CONTROLS else None
