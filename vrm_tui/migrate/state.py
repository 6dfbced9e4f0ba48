"""The migration's persisted state, its guard's heartbeat and its control channel, all in the
state dir.

The migration is run by a detached guard process (`vrm_tui.migrate.guard`) that no terminal
owns. Everyone else (the CLI, every TUI) reads the state and steers through control requests:
small files that name the person who asked, which the guard consumes and journals. A guard
that has not beaten for `UNGUARDED_AFTER_S` is shown everywhere as UNGUARDED.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vrm_tui.core.names import ACTIVE_PHASES, CONTROLS, Control, Phase
from vrm_tui.core.paths import StateDir
from vrm_tui.migrate.plan import SHADOW, Plan
from vrm_tui.system.files import write_atomic
from vrm_tui.system.procs import start_ticks

ACTIVE = ACTIVE_PHASES
UNGUARDED_AFTER_S = 5.0
"""A guard silent this long is gone as far as anyone can tell: the migration is UNGUARDED."""


@dataclass
class StepRecord:
    """How one finished step ended, for the timeline."""

    step: int
    target: int
    outcome: str  # passed | promoted | failed | stopped
    at: float
    detail: str = ""


@dataclass
class MigrationState:
    plan: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    step: int = 0
    phase: Phase = "applying"
    step_started: float | None = None
    reason: str = ""
    verdict: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None  # gates.StepEvidence of the current step
    baseline: dict[str, Any] | None = None  # the last step's typescript evidence
    baked_s: float = 0.0  # bake seconds banked before the clock last started
    bake_since: float | None = None  # when the bake clock last started; None: stopped
    paused_at: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # StepRecord dicts
    parity_base: list[int] | None = None  # parity's (compared, mismatched, unanswered) at
    # the step's start: the parity gate judges what was compared since
    parity_by_migration: bool = False  # this migration switched mirroring on (and turns it off)
    started: float = field(default_factory=time.time)
    started_by: str = ""
    updated: float = field(default_factory=time.time)
    owner_pid: int | None = None  # the guard running it
    owner_ticks: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MigrationState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE

    @property
    def plan_obj(self) -> Plan:
        return Plan.from_dict(self.plan)

    @property
    def steps(self) -> tuple[int, ...]:
        """The plan's rust weights, the shadow step as SHADOW (0)."""
        return tuple(SHADOW if step == "shadow" else int(step) for step in self.plan["steps"])

    @property
    def target(self) -> int:
        return self.steps[self.step]

    def owner_alive(self) -> bool:
        """The guard process recorded here still runs (not a stranger that reused its pid)."""
        return (self.owner_pid is not None and self.owner_ticks is not None
                and start_ticks(self.owner_pid) == self.owner_ticks)

    def claim(self) -> None:
        """This process now runs the migration."""
        self.owner_pid, self.owner_ticks = os.getpid(), start_ticks(os.getpid())

    def baked(self, now: float | None = None) -> float:
        """Bake seconds so far: the clock stops while paused and resumes where it was."""
        running = (now or time.time()) - self.bake_since if self.bake_since else 0.0
        return self.baked_s + max(0.0, running)

    def stop_clock(self, now: float | None = None) -> None:
        self.baked_s = self.baked(now)
        self.bake_since = None

    def start_clock(self, now: float | None = None) -> None:
        self.bake_since = now or time.time()

    def record_step(self, outcome: str, detail: str = "") -> None:
        self.history.append(asdict(StepRecord(self.step, self.target, outcome, time.time(),
                                              detail)))

    def eta(self, now: float | None = None) -> tuple[float | None, float | None]:
        """(when the current step ends if its gates hold, when the whole plan ends)."""
        if self.phase != "baking":
            return None, None
        now = now or time.time()
        bake = float(self.plan["bake_seconds"])
        step_end = now + max(0.0, bake - self.baked(now))
        remaining_steps = len(self.plan["steps"]) - self.step - 1
        return step_end, step_end + remaining_steps * bake


@dataclass(frozen=True)
class Request:
    """A steering request: what, and who asked."""

    control: Control
    operator: str
    at: float


class StateStore:
    def __init__(self, state_dir: Path) -> None:
        paths = StateDir(state_dir)
        self.path = paths.migration
        self.control_path = paths.migration_control
        self.heartbeat_path = paths.migration_heartbeat
        self.paths = paths

    def load(self) -> MigrationState | None:
        try:
            data = json.loads(self.path.read_text())
            return MigrationState.from_dict(data)
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.path} is unreadable ({exc}); move it aside to start over") \
                from None

    def save(self, state: MigrationState) -> None:
        state.updated = time.time()
        write_atomic(self.path, json.dumps(asdict(state)))

    # --- the guard's heartbeat ----------------------------------------------------------------

    def beat(self) -> None:
        """The guard is alive and looking (called at least once a second)."""
        write_atomic(self.heartbeat_path, json.dumps({"pid": os.getpid(), "at": time.time()}),
                      sync=False)

    def last_beat(self) -> float | None:
        try:
            return float(json.loads(self.heartbeat_path.read_text())["at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def guarded(self, state: MigrationState, now: float | None = None) -> bool:
        """True while a guard runs this migration and beat within UNGUARDED_AFTER_S."""
        beat = self.last_beat()
        return (state.owner_alive() and beat is not None
                and (now or time.time()) - beat <= UNGUARDED_AFTER_S)

    def note_unguarded(self, state: MigrationState) -> bool:
        """True exactly once per lost guard (across every vrm process): the caller journals."""
        marker = self.paths.root / f".migration-unguarded-{state.id}-{state.owner_pid}"
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        except OSError:
            return False
        os.close(fd)
        return True

    # --- steering -----------------------------------------------------------------------------

    def request(self, control: Control, operator: str) -> None:
        if control not in CONTROLS:
            raise ValueError(f"unknown migration control {control!r}")
        write_atomic(self.control_path, json.dumps({"control": control, "operator": operator,
                                                     "at": time.time()}))

    def take_request(self) -> Request | None:
        try:
            raw = self.control_path.read_text()
            self.control_path.unlink()
        except FileNotFoundError:
            return None
        with contextlib.suppress(ValueError, TypeError, KeyError):
            data = json.loads(raw)
            control = data["control"]
            if control in CONTROLS:
                return Request(control, str(data.get("operator", "")), float(data["at"]))
        return None
