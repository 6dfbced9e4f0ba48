"""The journal: append-only JSONL of every action, shared by every vrm on the host.

One record per action (time, operator, host, action, from, to, result, duration, detail).
Each record is one `write` on an O_APPEND descriptor, so concurrent writers never interleave
lines, and readers (the TUI of a pairing partner) can follow the file by offset.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vrm_tui.core.names import Action, Result


def operator_identity(environ: dict[str, str] | None = None) -> str:
    """Who is acting: `$USER` (or sudo's caller) plus the SSH client address when there is one."""
    env = dict(os.environ) if environ is None else environ
    user = env.get("SUDO_USER") or env.get("USER") or env.get("LOGNAME")
    if not user:
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = f"uid{os.getuid()}"
    ssh = env.get("SSH_CLIENT") or env.get("SSH_CONNECTION") or ""
    address = ssh.split()[0] if ssh.split() else ""
    return f"{user}@{address}" if address else user


@dataclass(frozen=True)
class Record:
    """One journal line."""

    action: Action
    result: Result
    operator: str = field(default_factory=operator_identity)
    host: str = field(default_factory=socket.gethostname)
    time: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    from_: Any = None
    to: Any = None
    duration_ms: float | None = None
    detail: str = ""
    pid: int = field(default_factory=os.getpid)

    def to_json(self) -> str:
        data = asdict(self)
        data["from"] = data.pop("from_")
        return json.dumps(data, separators=(",", ":"), sort_keys=False)

    @classmethod
    def from_json(cls, line: str) -> Record:
        data = json.loads(line)
        data["from_"] = data.pop("from", None)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class Journal:
    """Appends records to, and reads them from, `<state>/journal.jsonl`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: Record) -> Record:
        """Append one record. Raises OSError when the journal cannot be written (a full or
        read-only disk, `chattr +i`): callers say so, next to what the action did.

        Created 0640: it names operators and their SSH addresses."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = (record.to_json() + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            if os.fstat(fd).st_mode & 0o037:  # an older, world-readable journal
                with contextlib.suppress(OSError):
                    os.fchmod(fd, 0o640)
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write: the disk is full")
        finally:
            os.close(fd)
        return record

    def read(self, limit: int | None = None) -> list[Record]:
        """The last `limit` records, oldest first; unreadable lines are skipped."""
        records, _ = self.read_from(0)
        return records[-limit:] if limit else records

    def read_from(self, offset: int) -> tuple[list[Record], int]:
        """Records appended since byte `offset`, and the offset to continue from.

        A partial last line (a writer mid-append) is left for the next call.
        """
        try:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except FileNotFoundError:
            return [], 0
        end = data.rfind(b"\n") + 1
        records = []
        for line in data[:end].splitlines():
            try:
                records.append(Record.from_json(line.decode()))
            except (ValueError, TypeError):
                continue
        return records, offset + end


class Stopwatch:
    """Milliseconds since creation, for the journal's duration field."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def ms(self) -> float:
        return round((time.perf_counter() - self.start) * 1000, 1)
