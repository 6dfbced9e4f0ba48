"""The traffic controller: one writer at a time, the apply protocol, a journal record per action.

Apply protocol (DESIGN.md): render the candidate generation -> `nginx -t` on the full
config -> atomic swap of the `current` link -> reload -> verify the new generation serves
and the old workers stopped accepting -> journal. Any failure leaves the previous config
serving and says why. Nothing here reads Prometheus or other telemetry: rollback must work
with every other source down.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vrm_tui.core.errors import Failure
from vrm_tui.core.names import Action
from vrm_tui.core.split import ROLLBACK, Split
from vrm_tui.journal import Journal, Record, Stopwatch, operator_identity
from vrm_tui.settings import Settings
from vrm_tui.system.procs import worker_retired
from vrm_tui.traffic import nginx
from vrm_tui.traffic.port import ProxyHost
from vrm_tui.traffic.served import ProxyUnreachable, Served

VERIFY_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.003


class ApplyError(Failure):
    """An action failed; the previous config is still serving. The message says why."""


class LockBusy(ApplyError):
    """Another vrm holds the write lock longer than this caller would wait."""


@dataclass(frozen=True)
class ApplyResult:
    """What an action did, as journaled."""

    action: Action
    before: Split | None
    after: Split
    generation: int
    duration_ms: float
    verified: bool


class StateLock:
    """An exclusive flock on `<state>/lock`; the holder writes who it is for error messages."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def hold(self, action: str, timeout: float) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LockBusy(
                            f"another vrm is changing traffic ({self.holder()}); "
                            f"waited {timeout:.0f}s, try again"
                        ) from None
                    time.sleep(0.005)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "action": action,
                                      "operator": operator_identity()}).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def holder(self) -> str:
        try:
            data = json.loads(self.path.read_text() or "{}")
            return f"{data.get('action')} by {data.get('operator')}, pid {data.get('pid')}"
        except (OSError, ValueError):
            return "holder unknown"


class TrafficController:
    """Changes the split nginx serves, for the CLI, the TUI and the migration engine alike."""

    def __init__(self, settings: Settings, host: ProxyHost,
                 journal: Journal | None = None) -> None:
        self.settings = settings
        self.host = host
        self.store = nginx.ConfigStore(settings.paths.nginx)
        self.journal = journal or Journal(settings.paths.journal)
        self.lock = StateLock(settings.paths.lock)

    # --- reading -------------------------------------------------------------------------

    def served(self, timeout: float = 1.0) -> Served:
        """What the running nginx serves, asked of nginx itself."""
        return self.host.served(timeout=timeout)

    def configured(self) -> Split | None:
        """The split of the generation `current` points at (what a restart would load)."""
        gen = self.store.current()
        return gen.split() if gen else None

    # --- actions -------------------------------------------------------------------------

    def set_split(self, split: Split, action: Action = "deploy", wait: float = 30.0) -> ApplyResult:
        """Make nginx serve `split`, verified, or raise ApplyError with the old config serving."""
        return self._act(action, split, wait)

    def rollback(self, wait: float = 10.0) -> ApplyResult:
        """All traffic to typescript. Depends on nothing but nginx and the state dir."""
        return self._act("rollback", ROLLBACK, wait)

    def reload(self, wait: float = 30.0) -> ApplyResult:
        """Re-render from the templates with the split being served, test, reload, verify."""
        return self._act("reload", None, wait)

    def prepare(self, split: Split) -> nginx.Generation:
        """Write, test and activate a first generation for a proxy that is not running yet."""
        with self.lock.hold("prepare", timeout=30.0):
            gen = self._candidate(split, self._next_number(None))
            self.store.activate(gen)
            return gen

    def _act(self, action: Action, split: Split | None, wait: float) -> ApplyResult:
        watch = Stopwatch()
        try:
            with self.lock.hold(action, timeout=wait):
                return self._act_locked(action, split, watch)
        except LockBusy as exc:
            self.journal.append(Record(action=action, result="failed", to=_d(split),
                                       duration_ms=watch.ms(), detail=str(exc)))
            raise

    def _act_locked(self, action: Action, split: Split | None, watch: Stopwatch) -> ApplyResult:
        """Apply and journal under the lock, so journal order is apply order."""
        before: Split | None = None
        target = split
        try:
            if not self.host.proxy_running():
                raise ApplyError(
                    "vision-proxy is not running; start the stack with `vrm up` "
                    "(or `vrm deploy`, which starts it)"
                )
            served = self._served_or_none()
            before = served.split if served else self.configured()
            if target is None:
                target = before or self.settings.split
            result = self._apply(action, before, target, served, watch)
        except ApplyError as exc:
            self.journal.append(Record(action=action, result="failed", from_=_d(before),
                                       to=_d(target), duration_ms=watch.ms(), detail=str(exc)))
            raise
        self.journal.append(Record(action=action, result="ok", from_=_d(before), to=_d(target),
                                   duration_ms=result.duration_ms,
                                   detail=f"generation {result.generation} verified"))
        return result

    def _served_or_none(self) -> Served | None:
        try:
            return self.served(timeout=0.5)
        except ProxyUnreachable:
            return None

    def _next_number(self, served: Served | None) -> int:
        known = [g.number for g in self.store.generations()]
        if served:
            known.append(served.generation)
        return max(known, default=0) + 1

    def _candidate(self, split: Split, number: int) -> nginx.Generation:
        params = self.host.proxy_params()
        nginx.ensure_dirs(params)
        try:
            main = nginx.render_main(params)
        except (OSError, KeyError) as exc:
            raise ApplyError(f"cannot render {params.template}: {exc}") from None
        upstream = nginx.render_upstream(split, number, params.rust_address, params.ts_address)
        gen = self.store.write(number, main, upstream)
        try:
            self.host.test_proxy_config(gen.main)
        except nginx.NginxTestFailed as exc:
            rejected = gen.path.with_name(gen.path.name + ".rejected")  # kept to diagnose
            shutil.rmtree(rejected, ignore_errors=True)
            os.replace(gen.path, rejected)
            reason = str(exc).replace(str(gen.path), str(rejected))
            raise ApplyError(f"nginx -t rejected the new config: {reason}") from None
        except nginx.NginxMissing as exc:
            raise ApplyError(str(exc)) from None
        return gen

    def _apply(self, action: Action, before: Split | None, target: Split,
               served: Served | None, watch: Stopwatch) -> ApplyResult:
        gen = self._candidate(target, self._next_number(served))
        previous = self.store.current()
        old_workers = self.host.proxy_worker_pids()
        log = self.host.proxy_error_log()
        log_offset = log.stat().st_size if log.exists() else 0
        self.store.activate(gen)
        try:
            self.host.signal_proxy_reload()
            self._verify(gen.number, old_workers, log, log_offset)
        except ApplyError:
            if previous is not None:
                self.store.activate(previous)
                if self._served_generation() == gen.number:
                    # It loaded after all, late: bring nginx back to the previous generation.
                    self.host.signal_proxy_reload()
            raise
        self.store.prune()
        return ApplyResult(action, before, target, gen.number, watch.ms(), verified=True)

    def _served_generation(self) -> int | None:
        served = self._served_or_none()
        return served.generation if served else None

    def _verify(self, number: int, old_workers: set[int], log: Path, offset: int) -> None:
        """Wait until new connections reach generation `number` and no old worker accepts.

        nginx's reload returns before the new workers exist, and the master keeps the old
        workers accepting for ~100 ms after starting the new ones: both are waited out here.
        """
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        last_error = "no answer yet"
        while True:
            emerg = _new_emergencies(log, offset)
            if emerg:
                raise ApplyError(f"nginx refused to load generation {number}: {emerg}")
            try:
                if self.served(timeout=0.5).generation == number:
                    break
                last_error = "still serving the previous generation"
            except ProxyUnreachable as exc:
                last_error = str(exc)
            if time.monotonic() >= deadline:
                raise ApplyError(
                    f"nginx did not start serving generation {number} within "
                    f"{VERIFY_TIMEOUT_S:.0f}s ({last_error}); see {log}"
                )
            time.sleep(POLL_INTERVAL_S)
        while not all(worker_retired(pid) for pid in old_workers):
            if time.monotonic() >= deadline:
                raise ApplyError(
                    f"generation {number} serves, but old nginx workers still accept "
                    f"connections after {VERIFY_TIMEOUT_S:.0f}s"
                )
            time.sleep(POLL_INTERVAL_S)


def _new_emergencies(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    bad = [ln for ln in text.splitlines() if "[emerg]" in ln or "[alert]" in ln]
    return bad[-1].split("] ", 1)[-1] if bad else ""


def _d(split: Split | None) -> dict[str, int] | None:
    return split.as_dict() if split else None
