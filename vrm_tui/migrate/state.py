"""The migration's persisted state, its guard's heartbeat and its control channel, all in the
state dir.

The migration is run by a detached guard process (`vrm_tui.migrate.guard`) that no terminal
owns. Everyone else (the CLI, every TUI) reads the state and steers through the control queue
(`vrm_tui.migrate.control`): one small file per request, naming the person who asked, which
the guard drains, answers and journals. A guard that has not beaten for `UNGUARDED_AFTER_S`
is shown everywhere as UNGUARDED; a beat counts only for the migration it names.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vrm_tui.core.names import ACTIVE_PHASES, Control, Phase
from vrm_tui.core.paths import StateDir
from vrm_tui.migrate.control import ControlQueue, Request
from vrm_tui.migrate.plan import SHADOW, Plan
from vrm_tui.system.files import write_atomic
from vrm_tui.system.procs import start_ticks

ACTIVE = ACTIVE_PHASES
UNGUARDED_AFTER_S = 5.0
"""A guard silent this long is gone as far as anyone can tell: the migration is UNGUARDED."""
CLAIM_TIMEOUT_S = 15.0
"""How long a new migration may wait for its guard to claim it before it counts as UNGUARDED."""
HEARTBEAT_BYTES = 256
"""The heartbeat file's fixed size: allocated once, then overwritten in place."""


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
    parity_base: dict[str, Any] | list[int] | None = None  # parity's gate counts (per route)
    # at the step's start: the parity gate judges what was compared since
    parity_by_migration: bool = False  # this migration switched mirroring on (and turns it off)
    proxy_down_s: float = 0.0  # bake seconds of this step the proxy did not answer
    started: float = field(default_factory=time.time)
    started_by: str = ""
    updated: float = field(default_factory=time.time)
    owner_pid: int | None = None  # the guard running it
    owner_ticks: int | None = None
    owner_ns: str | None = None  # its pid namespace (a guard in vrm-control has its own)

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
        """The guard process recorded here still runs (not a stranger that reused its pid).
        A guard in another pid namespace (a container's) cannot be seen from here: its
        heartbeat alone tells."""
        if self.owner_ns is not None and self.owner_ns != _pid_namespace():
            return self.owner_pid is not None
        return (self.owner_pid is not None and self.owner_ticks is not None
                and start_ticks(self.owner_pid) == self.owner_ticks)

    def claim(self) -> None:
        """This process now runs the migration."""
        self.owner_pid, self.owner_ticks = os.getpid(), start_ticks(os.getpid())
        self.owner_ns = _pid_namespace()

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


class Heartbeat:
    """The guard's beat, written in place into a file allocated when the guard starts.

    A full disk cannot fail an overwrite of blocks the file already owns, so the guard keeps
    beating (and so stays GUARDED) when nothing else can be written; the newest beat is also
    kept in memory (`last`), and the newest write failure in `error`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last: float | None = None
        self.error = ""
        self._fd: int | None = None

    def open(self) -> None:
        """Allocate the file (done at the guard's start, while there is room)."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < HEARTBEAT_BYTES:
                os.posix_fallocate(fd, 0, HEARTBEAT_BYTES)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def beat(self, migration_id: str) -> None:
        now = time.time()
        self.last = now
        record = json.dumps({"pid": os.getpid(), "migration": migration_id, "at": now})
        try:
            self.open()
            assert self._fd is not None
            os.pwrite(self._fd, record.encode().ljust(HEARTBEAT_BYTES), 0)
            self.error = ""
        except OSError as exc:
            self.error = f"heartbeat {self.path}: {exc.strerror or exc}"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_beat(path: Path) -> tuple[str, float] | None:
    """(migration id, time) of the newest beat in `path`, or None. A read that overlapped
    an overwrite is read again."""
    for _ in range(3):
        try:
            data = json.loads(path.read_bytes().decode().strip("\0 \n"))
            return str(data.get("migration", "")), float(data["at"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return None


class StateStore:
    def __init__(self, state_dir: Path) -> None:
        paths = StateDir(state_dir)
        self.path = paths.migration
        self.queue = ControlQueue(paths.migration_requests)
        self.heartbeat_path = paths.migration_heartbeat
        self.heartbeat = Heartbeat(self.heartbeat_path)
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

    def beat(self, migration_id: str) -> None:
        """The guard is alive and looking after `migration_id` (called at least once a
        second); never raises: a full disk is noted in `heartbeat.error`."""
        self.heartbeat.beat(migration_id)

    def last_beat(self, migration_id: str) -> float | None:
        """When a guard last beat for `migration_id`; a beat for another migration (the
        previous one's file) never counts."""
        found = read_beat(self.heartbeat_path)
        return found[1] if found is not None and found[0] == migration_id else None

    def guarded(self, state: MigrationState, now: float | None = None) -> bool:
        """True while a guard runs this migration and beat for it within UNGUARDED_AFTER_S,
        or while a new migration waits (up to CLAIM_TIMEOUT_S) for its first guard to claim
        it: requests queue meanwhile, and it is not UNGUARDED."""
        now = now or time.time()
        if state.owner_pid is None:
            return now - state.started <= CLAIM_TIMEOUT_S
        beat = self.last_beat(state.id)
        return state.owner_alive() and beat is not None and now - beat <= UNGUARDED_AFTER_S

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

    def request(self, control: Control, operator: str) -> Request:
        """Queue a steering request (OSError when it cannot be written)."""
        return self.queue.ask(control, operator)


def _pid_namespace() -> str | None:
    """This process's pid namespace (`pid:[inode]`), or None where /proc does not say."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
