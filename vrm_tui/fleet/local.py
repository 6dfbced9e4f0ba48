"""This host's fleet files, read without etcd: the agent's record and the hold.

Apart from the agent so that what reads them (`vrm fleet status`, the TUI's Fleet pane,
`vrm fleet rejoin`, the rollback's CLI) does not import the agent's loop, its telemetry and
the migration gates it guards with.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from vrm_tui.fleet.store import HostMode
from vrm_tui.settings import Settings
from vrm_tui.system.files import write_atomic

__all__ = ["AgentState", "held_by", "held_record"]


@dataclass(frozen=True)
class AgentState:
    """The agent's record in the state dir (StateDir.fleet_agent), rewritten on change."""

    fleet: str
    host: str
    pid: int
    mode: HostMode = "isolated"
    generation: int = 0  # the desired generation applied here
    rust: int | None = None  # what nginx served at the last look
    verified_at: str = ""
    apply_ms: float | None = None
    error: str = ""
    since: str = ""  # the first agent's start: older journal rollbacks hold nothing
    journal_offset: int = 0
    journal_time: str = ""  # the newest journal record read (a rewritten journal is re-read)
    previous_pid: int = 0  # the agent before this one (its journal records are its own)
    isolated_since: str = ""
    updated: str = ""

    @classmethod
    def load(cls, path: Path) -> AgentState | None:
        try:
            data = json.loads(path.read_text())
            return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        with contextlib.suppress(OSError):  # a full disk loses the record, never the agent
            write_atomic(path, json.dumps(asdict(self), indent=1) + "\n", sync=False)


def held_by(settings: Settings) -> str | None:
    """Who holds this host at rust 0 (a local rollback), or None."""
    record = held_record(settings)
    return None if record is None else str(record.get("by") or "unknown")


def held_record(settings: Settings) -> dict[str, object] | None:
    """The hold file: {by, at, and pid (a local rollback's) or from_host (a remote hold)}."""
    try:
        data = json.loads(settings.paths.fleet_held.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
