"""The traffic controller: one writer at a time, the apply protocol, a journal record per action.

Apply protocol (DESIGN.md): render the candidate generation -> `nginx -t` on the full
config -> atomic swap of the `current` link -> reload -> verify the new generation serves
and the old workers stopped accepting -> journal. Any failure leaves the previous config
serving and says why. Nothing here reads Prometheus or other telemetry: rollback must work
with every other source down.

Weight-only changes (deploy, rollback, set-split, every migration step) skip the reload when
nginx has the Lua module (`traffic/live.py`): write the split file (the disk stays the truth)
-> set it in nginx's shared memory over the loopback status listener -> verify on a fresh
connection -> journal. A failure puts the file back to what nginx serves.

A reload is judged by what nginx does, never by its error log: success is the new
generation answering on fresh connections with the old workers retired; failure is the
master back in its idle loop, the reload signal consumed, and no new worker started. The
error log only explains a failure established that way.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vrm_tui.core.errors import (
    ApplyError,
    BadInput,
    Failure,
    LockBusy,
    NginxMissing,
    NginxTestFailed,
    ProxyUnreachable,
    SplitRefused,
    StackError,
)
from vrm_tui.core.names import Action
from vrm_tui.core.split import ROLLBACK, Split
from vrm_tui.journal import Journal, Record, Stopwatch, operator_identity
from vrm_tui.settings import Settings
from vrm_tui.system.files import move_over
from vrm_tui.system.procs import worker_retired
from vrm_tui.traffic import live, nginx
from vrm_tui.traffic.port import ProxyHost
from vrm_tui.traffic.served import Served

VERIFY_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.003
MIN_FREE_BYTES = 5 * 1024 * 1024
"""A deploy or reload needs this much free space in the state dir (a rollback only what it
writes): the logs and the journal live there too."""
LOG_MAX_BYTES = 64 * 1024 * 1024
"""nginx's access and error logs are rotated (renamed to `.1`, nginx reopens) above this."""


@dataclass(frozen=True)
class ApplyResult:
    """What an action did, as journaled."""

    action: Action
    before: Split | None
    after: Split
    generation: int
    duration_ms: float
    verified: bool
    note: str = ""
    journal_error: str = ""


class StateLock:
    """An exclusive flock on `<state>/lock`; the holder writes who it is for error messages.

    Re-entrant within a thread (bring-up holds it while it prepares the first generation);
    an flock belongs to an open file description, so another thread or process waits."""

    _held = threading.local()

    def __init__(self, path: Path) -> None:
        self.path = path

    def _depths(self) -> dict[Path, int]:
        depths: dict[Path, int] | None = getattr(self._held, "depths", None)
        if depths is None:
            depths = self._held.depths = {}
        return depths

    @contextmanager
    def hold(self, action: str, timeout: float) -> Iterator[None]:
        depths = self._depths()
        if depths.get(self.path):
            depths[self.path] += 1
            try:
                yield
            finally:
                depths[self.path] -= 1
            return
        fd = self._open()
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
            try:  # who holds it, for whoever waits; a full disk must not stop the holder
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps({"pid": os.getpid(), "action": action,
                                          "operator": operator_identity()}).encode(), 0)
            except OSError:
                pass
            depths[self.path] = 1
            try:
                yield
            finally:
                depths[self.path] = 0
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def _open(self) -> int:
        """The lock file, read-write; read-only where the state dir cannot be written (a
        read-only file system): an flock needs no write access, and a rollback still runs."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) \
                    or not self.path.is_file():
                raise
            return os.open(self.path, os.O_RDONLY)

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
        self.token = nginx.state_token(settings.state_dir)
        self.min_free_bytes = MIN_FREE_BYTES
        self.log_max_bytes = LOG_MAX_BYTES

    # --- reading -------------------------------------------------------------------------

    def served(self, timeout: float = 1.0) -> Served:
        """What the running nginx serves, asked of nginx itself; an nginx that answers
        without this state dir's token is another deployment's, and counts as no answer."""
        served = self.host.served(timeout=timeout)
        if served.token != self.token:
            raise ProxyUnreachable(
                f"the nginx answering on PROXY_STATUS_PORT {self.settings.proxy_status_port} "
                f"is not this state dir's ({self.settings.state_dir}): another deployment's "
                "nginx holds the port"
            )
        return served

    def configured(self) -> Split | None:
        """What a restart would load: the split of the generation `current` points at, or
        of the split file when that is newer (nginx's init phase takes the newer one)."""
        gen = self.store.current()
        written = live.read_split(self.settings.paths.nginx_split)
        if written is not None and (gen is None or written[0] >= gen.number):
            return written[1]
        return gen.split() if gen else None

    # --- actions -------------------------------------------------------------------------

    def set_split(self, split: Split, action: Action = "deploy", wait: float = 30.0) -> ApplyResult:
        """Make nginx serve `split`, verified, or raise ApplyError with the old config serving."""
        return self._act(action, split, wait)

    def set_canary_timeout(self, canary_ms: int) -> Served | None:
        """Set how long a rust attempt may take before nginx gives up on it (and retries it
        on typescript when the request is safe to repeat), in shared memory, no reload.
        None where nginx has no canary timeout of its own (no Lua module, or backends it
        reaches by name). Raises ProxyUnreachable when nginx does not take it."""
        served = self.served(timeout=1.0)
        if not served.live or not served.canary_ms:
            return None
        return self.host.set_live_split(served.generation, served.split, timeout=1.0,
                                        canary_ms=canary_ms)

    def rollback(self, wait: float = 10.0) -> ApplyResult:
        """All traffic to typescript. Depends on nothing but nginx and the state dir; works
        with the nginx master gone (its orphaned workers are retired, a new master starts)."""
        return self._act("rollback", ROLLBACK, wait)

    def reload(self, wait: float = 30.0) -> ApplyResult:
        """Re-render from the templates with the split being served, test, reload, verify."""
        return self._act("reload", None, wait)

    def prepare(self, split: Split) -> nginx.Generation:
        """Write, test and activate a first generation for a proxy that is not running yet."""
        with self.lock.hold("prepare", timeout=30.0):
            gen = self._candidate(split, self._next_number(None), self.min_free_bytes)
            self.store.activate(gen)
            self.store.keep_reserve()
            return gen

    def settle_for_start(self) -> str:
        """Before a stopped proxy starts: never load a generation nobody verified.

        `current` ahead of the last verified generation means a change was interrupted
        between the swap and its verification (it was never journaled as done); nginx is
        started on the last verified one instead. Returns what was done, for the journal."""
        notes = [self._settle_pending_split()]
        good, current = self.store.good(), self.store.current()
        if good is not None and current is not None and good.number != current.number \
                and good.path.is_dir():
            self.store.activate(good)
            notes.append(f"generation {current.number} was never verified (an interrupted "
                         f"change); starting on verified generation {good.number}")
        return "; ".join(n for n in notes if n)

    def _settle_pending_split(self) -> str:
        """A split file ahead of the last verified split was written by a change that never
        reached nginx (killed between the write and the set): a start must not serve it.
        The verified split is written back under a newer generation; the pending one is
        reported."""
        paths = self.settings.paths
        written = live.read_split(paths.nginx_split)
        verified = live.read_split(paths.nginx_verified)
        if written is None or verified is None or written[0] <= verified[0] \
                or written[1] == verified[1]:
            return ""
        number = self._next_number(None)
        try:
            live.write_split(paths.nginx_split, number, verified[1], paths.nginx_splits_log,
                             operator_identity(), "up")
        except OSError as exc:
            raise ApplyError(f"the split file holds generation {written[0]} ({written[1]}), "
                             "which nginx never served, and it could not be put back to the "
                             f"last verified split {verified[1]}: {exc.strerror or exc}") \
                from None
        return (f"pending split not served: generation {written[0]} ({written[1]}) was "
                f"written but never verified; serving the last verified split {verified[1]} "
                f"(generation {number})")

    def mark_started(self) -> None:
        """After a fresh start: remember the generation nginx answers with as verified."""
        current = self.store.current()
        try:
            served = self.served(timeout=1.0)
        except ProxyUnreachable:
            return
        if current is not None and served.config_generation == current.number:
            self.store.mark_good(current)
        live.mark_verified(self.settings.paths.nginx_verified, served.generation, served.split)

    def rotate_logs(self) -> list[Path]:
        """Rotate nginx's logs that grew past `log_max_bytes` (rename to `.1`, nginx
        reopens on USR1), so traffic alone cannot fill the state dir. Called on every
        action and bring-up; the TUI and the migration guard may call it on their polls
        (it skips when another vrm holds the lock)."""
        try:
            with self.lock.hold("rotate-logs", timeout=0):
                return self._rotate_locked()
        except (LockBusy, OSError):
            return []

    def _rotate_locked(self) -> list[Path]:
        rotated = []
        for log in (self.host.proxy_error_log(), self.host.access_log()):
            try:
                if log.stat().st_size > self.log_max_bytes:
                    move_over(log, log.with_name(log.name + ".1"))
                    rotated.append(log)
            except OSError:
                continue
        if rotated:
            with contextlib.suppress(StackError):  # nothing runs: a start opens fresh files
                self.host.reopen_proxy_logs()
        return rotated

    def _act(self, action: Action, split: Split | None, wait: float) -> ApplyResult:
        watch = Stopwatch()
        try:
            with self.lock.hold(action, timeout=wait):
                return self._act_locked(action, split, watch)
        except LockBusy as exc:
            trouble = self._journal(Record(action=action, result="failed", to=_d(split),
                                           duration_ms=watch.ms(), detail=str(exc)))
            if trouble:
                raise LockBusy(f"{exc}; {trouble}") from None
            raise

    def _act_locked(self, action: Action, split: Split | None, watch: Stopwatch) -> ApplyResult:
        """Apply and journal under the lock, so journal order is apply order."""
        before: Split | None = None
        target = split
        try:
            self._rotate_locked()
            recovering = not self.host.proxy_running()
            if recovering and not self.host.proxy_orphans():
                raise ApplyError(
                    "vision-proxy is not running; start the stack with `vrm up` "
                    "(or `vrm deploy`, which starts it)"
                )
            served = self._served_or_none()
            before = served.split if served else self.configured()
            if target is None:
                target = before or self.settings.split
            need = 0 if action == "rollback" else self.min_free_bytes
            if action == "rollback":  # reads no settings beyond the state dir before acting
                result = self._rollback(before, target, served, recovering, watch)
            elif recovering:
                result = self._recover(action, before, target, served, need, watch)
            else:
                params = self.host.proxy_params()
                if (served is not None and params.live is not None and action != "reload"
                        and self._config_unchanged(params)):
                    result = self._apply_live(action, before, target, served, params.live,
                                              need, watch)
                else:
                    result = self._apply(action, before, target, served, need, watch)
        except ApplyError as exc:
            trouble = self._journal(Record(action=action, result="failed", from_=_d(before),
                                           to=_d(target), duration_ms=watch.ms(),
                                           detail=str(exc)))
            if trouble:
                raise ApplyError(f"{exc}; {trouble}") from None
            raise
        self.store.keep_reserve()  # re-created after every use, whenever there is room
        detail = f"generation {result.generation} verified"
        if result.note:
            detail += f"; {result.note}"
        trouble = self._journal(Record(action=action, result="ok", from_=_d(before),
                                       to=_d(target), duration_ms=result.duration_ms,
                                       detail=detail))
        if trouble:
            return ApplyResult(result.action, result.before, result.after, result.generation,
                               result.duration_ms, result.verified, result.note, trouble)
        return result

    def _journal(self, record: Record) -> str:
        """Append a record; '' or why it could not be written (never raises: the change it
        records has happened, or not, either way)."""
        try:
            self.journal.append(record)
        except OSError as exc:
            return (f"the journal {self.journal.path} could not be written "
                    f"({exc.strerror or exc}): this {record.action} is not journaled")
        return ""

    def _served_or_none(self) -> Served | None:
        try:
            return self.served(timeout=0.5)
        except ProxyUnreachable:
            return None

    def _next_number(self, served: Served | None) -> int:
        """Past every generation, the set-aside (`gen-N.rejected`, `.refused`) included:
        a number names one config in the journal."""
        known = [g.number for g in self.store.generations()]
        if self.store.root.is_dir():
            known += [int(m.group(1)) for p in self.store.root.iterdir()
                      if (m := re.fullmatch(r"gen-(\d+)\.\w+", p.name))]
        if served:
            known.append(served.generation)
        written = live.read_split(self.settings.paths.nginx_split)
        if written is not None:
            known.append(written[0])
        return max(known, default=0) + 1

    def _candidate(self, split: Split, number: int, need: int) -> nginx.Generation:
        params = self.host.proxy_params()
        try:
            nginx.secure_state_dir(self.settings.state_dir, params.worker_user)
            nginx.ensure_dirs(params)
            self.store.root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.store.root).free
        except OSError as exc:
            raise ApplyError(f"cannot prepare {self.settings.state_dir}: "
                             f"{exc.strerror or exc}; nginx keeps serving what it serves") from None
        if free < need:
            raise ApplyError(
                f"only {free / 2**20:.1f} MB free in {self.store.root} (a change needs "
                f"{need / 2**20:.0f} MB: the logs and journal live there too); free some "
                "space; nginx keeps serving the previous generation"
            )
        try:
            main = nginx.render_main(params)
        except (OSError, KeyError) as exc:
            raise ApplyError(f"cannot render {params.template}: {exc}") from None
        if params.live is not None:
            try:
                live.install_lua(params.live)
            except OSError as exc:
                raise ApplyError(f"cannot install the Lua split module in "
                                 f"{params.live.lua_dir}: {exc.strerror or exc}") from None
        upstream = nginx.render_upstream(split, number, params.rust_address, params.ts_address,
                                         self.token, params.live,
                                         params.upstream_timeout * 1000, params.canary_ms)
        try:
            try:
                gen = self.store.write(number, main, upstream)
            except OSError as exc:
                # A rollback on a full disk spends the space held in reserve for it.
                if exc.errno != errno.ENOSPC or need or not self.store.release_reserve():
                    raise
                gen = self.store.write(number, main, upstream)
        except OSError as exc:
            raise ApplyError(
                f"cannot write generation {number} in {self.store.root}: "
                f"{exc.strerror or exc}; nginx keeps serving the previous generation"
            ) from None
        try:
            self.host.test_proxy_config(gen.main)
        except NginxTestFailed as exc:
            reason = str(exc).replace(str(gen.path), str(self._set_aside(gen, "rejected")))
            raise ApplyError(f"nginx -t rejected the new config: {reason}") from None
        except NginxMissing as exc:
            raise ApplyError(str(exc)) from None
        return gen

    def _set_aside(self, gen: nginx.Generation, why: str) -> Path:
        """Keep a generation nginx would not take as `gen-N.<why>`, to diagnose."""
        aside = gen.path.with_name(f"{gen.path.name}.{why}")
        shutil.rmtree(aside, ignore_errors=True)
        try:
            move_over(gen.path, aside)
        except OSError:
            shutil.rmtree(gen.path, ignore_errors=True)
        return aside

    def _apply(self, action: Action, before: Split | None, target: Split,
               served: Served | None, need: int, watch: Stopwatch,
               gen: nginx.Generation | None = None) -> ApplyResult:
        if gen is None:
            gen = self._candidate(target, self._next_number(served), need)
        previous = self.store.good() or self.store.current()
        self._wait_settled()
        old_workers = self.host.proxy_worker_pids()
        log = self.host.proxy_error_log()
        log_offset = _size(log)
        self.store.activate(gen)
        try:
            self.host.signal_proxy_reload()
            self._verify(gen.number, old_workers, log, log_offset,
                         served.config_generation if served else None)
        except (ApplyError, StackError) as exc:
            raise ApplyError(self._restore(previous, gen, str(exc))) from None
        self.store.mark_good(gen)
        self.store.prune()
        if free_after(self.store.root) >= self.min_free_bytes:
            self.store.keep_reserve()
        now = self.served(timeout=1.0)
        if now.live and (now.generation, now.split) != (gen.number, target):
            # A reload never touches the split in shared memory: set it now the new config
            # is verified serving.
            self._set_live(gen.number, target, self._live_paths(), now, action)
        elif not now.live:
            live.mark_verified(self.settings.paths.nginx_verified, now.generation, now.split)
        return ApplyResult(action, before, target, gen.number, watch.ms(), verified=True)

    def _live_paths(self) -> nginx.LiveSplit:
        """The state dir's zero-reload paths, whatever the settings say now: what the running
        nginx loaded is what counts."""
        return live.live_split(self.settings.paths)

    def _rollback(self, before: Split | None, target: Split, served: Served | None,
                  recovering: bool, watch: Stopwatch) -> ApplyResult:
        """Set the split and nothing else: never render, test or reload the current template
        or settings. On the live path one signed write to shared memory; where a reload or a
        restart cannot be avoided (no Lua module, nginx loaded another key, the master is
        gone), the last config nginx accepted with only the split changed. A pending config
        change is reported, never shipped."""
        if recovering:
            gen = self._accepted_candidate(target, self._next_number(served))
            result = self._recover("rollback", before, target, served, 0, watch, gen)
        elif served is not None and served.live:
            try:
                result = self._apply_live("rollback", before, target, served,
                                          self._live_paths(), 0, watch)
            except ApplyError as exc:
                if not isinstance(exc.__cause__, SplitRefused):
                    raise
                gen = self._accepted_candidate(target, self._next_number(served))
                result = self._apply("rollback", before, target, served, 0, watch, gen)
                result = _with_note(result, f"the live change was refused ({exc}); "
                                            "reloaded the last accepted config instead")
        else:
            gen = self._accepted_candidate(target, self._next_number(served))
            result = self._apply("rollback", before, target, served, 0, watch, gen)
        pending = self._pending_change()
        return _with_note(result, pending) if pending else result

    def _pending_change(self) -> str:
        """What a rollback left unapplied: the templates or settings render a config other
        than the one nginx last accepted (or cannot be rendered at all)."""
        try:
            params = self.host.proxy_params()
        except (Failure, BadInput) as exc:
            return f"pending change not applied: the settings cannot be rendered ({exc})"
        if self._config_unchanged(params):
            return ""
        return ("pending change not applied: the nginx template or settings differ from the "
                "config nginx serves; `vrm reload` applies them (nginx -t first)")

    def _accepted_candidate(self, split: Split, number: int) -> nginx.Generation:
        """A generation made of the last config nginx accepted, with only the split changed:
        its main config verbatim, its upstream pools re-rendered from its own addresses. On
        a full disk the reserve kept for this is spent."""
        base = self.store.good() or self.store.current()
        if base is None:
            raise ApplyError("no config nginx accepted yet: start the stack with `vrm up`")
        try:
            main = base.main.read_text()
            shape = nginx.upstream_shape(base.upstream.read_text())
            upstream = nginx.render_upstream(split, number, shape.rust_address,
                                             shape.ts_address, self.token,
                                             self._live_paths() if shape.live else None,
                                             shape.upstream_ms, shape.canary_ms)
        except (OSError, ValueError, Failure) as exc:
            raise ApplyError(f"cannot read the last accepted config {base.path}: {exc}") \
                from None
        try:
            try:
                return self.store.write(number, main, upstream)
            except OSError as exc:
                if exc.errno != errno.ENOSPC or not self.store.release_reserve():
                    raise
                return self.store.write(number, main, upstream)
        except OSError as exc:
            raise ApplyError(f"cannot write generation {number} in {self.store.root}: "
                             f"{exc.strerror or exc}; nginx keeps serving what it serves") \
                from None

    def _config_unchanged(self, params: nginx.ProxyParams) -> bool:
        """True when the running generation's config is what the templates and settings
        render now: then a weight change needs no reload."""
        current = self.store.current()
        split = current.split() if current else None
        if current is None or split is None:
            return False
        try:
            main = nginx.render_main(params)
            upstream = nginx.render_upstream(split, current.number, params.rust_address,
                                             params.ts_address, self.token, params.live,
                                             params.upstream_timeout * 1000, params.canary_ms)
            return (current.main.read_text() == main
                    and current.upstream.read_text() == upstream)
        except (OSError, KeyError, Failure, BadInput):
            return False

    def _apply_live(self, action: Action, before: Split | None, target: Split,
                    served: Served, split_live: nginx.LiveSplit, need: int,
                    watch: Stopwatch) -> ApplyResult:
        """The zero-reload change: split file first, then nginx's shared memory, verified
        on a fresh connection. Every worker reads the same memory: once one answers with the
        new generation, no new request is balanced by the old split."""
        number = self._next_number(served)
        if need and free_after(self.store.root) < need:
            raise ApplyError(
                f"only {free_after(self.store.root) / 2**20:.1f} MB free in {self.store.root} "
                f"(a change needs {need / 2**20:.0f} MB: the logs and journal live there "
                "too); free some space; nginx keeps serving the previous split")
        note = self._set_live(number, target, split_live, served, action, need)
        return ApplyResult(action, before, target, number, watch.ms(), verified=True,
                           note=note)

    def _set_live(self, number: int, target: Split, split_live: nginx.LiveSplit,
                  served: Served, action: Action = "deploy", need: int = 0) -> str:
        """Write the split file, set it in shared memory, verify; or put the file back.

        A rollback whose split file cannot be written at all (a read-only state dir) still
        moves the traffic: the returned note says a restart would load the old split."""
        note = ""
        try:
            try:
                live.write_split(split_live.split_file, number, target,
                                 self.settings.paths.nginx_splits_log, operator_identity(),
                                 action)
            except OSError as exc:
                # A rollback on a full disk spends the space held in reserve for it.
                if exc.errno != errno.ENOSPC or need or not self.store.release_reserve():
                    raise
                live.write_split(split_live.split_file, number, target)
        except OSError as exc:
            if action != "rollback":
                raise ApplyError(f"cannot write the split to {split_live.split_file}: "
                                 f"{exc.strerror or exc}; nginx keeps serving "
                                 f"{served.split}") from None
            note = (f"the split file {split_live.split_file} could not be written "
                    f"({exc.strerror or exc}): nginx serves {target} now, but a restart of "
                    "nginx would load the split on disk; fix the state dir and roll back "
                    "again")
        try:
            self.host.set_live_split(number, target, timeout=1.0)
            now = self.served(timeout=1.0)
            if now.generation != number or now.split != target:
                raise ProxyUnreachable(f"nginx answers generation {now.generation} "
                                       f"({now.split}), not {number}")
        except (ProxyUnreachable, StackError) as exc:
            raise ApplyError(self._unwrite(split_live, served, number, str(exc))) from exc
        live.mark_verified(self.settings.paths.nginx_verified, number, target)
        return note

    def _unwrite(self, split_live: nginx.LiveSplit, served: Served, number: int,
                 why: str) -> str:
        """After a failed live change: the split file back to what nginx serves (unless it
        took the change after all). Returns the failure message."""
        now = self._served_or_none()
        if now is not None and now.generation == number:
            return f"{why}; nginx took generation {number} late: it serves {now.split}"
        keep = now or served
        try:
            live.write_split(split_live.split_file, keep.generation, keep.split)
        except OSError as exc:
            return (f"{why}; and the split file could not be put back ({exc.strerror or exc}):"
                    f" `vrm status` shows it PENDING until the next change")
        return f"nginx did not take generation {number}: {why}; {keep.split} still serves"

    def _recover(self, action: Action, before: Split | None, target: Split,
                 served: Served | None, need: int, watch: Stopwatch,
                 gen: nginx.Generation | None = None) -> ApplyResult:
        """The master is gone and its orphaned workers serve: render and test the target
        (or take `gen`, made from the last accepted config), retire the orphans, start a
        fresh master on it, verify."""
        if gen is None:
            gen = self._candidate(target, self._next_number(served), need)
        previous = self.store.good() or self.store.current()
        self.store.activate(gen)
        try:
            note = self.host.restart_proxy()
            self._verify(gen.number, set(), self.host.proxy_error_log(), 0, None)
        except (ApplyError, StackError) as exc:
            if previous is not None:
                self.store.activate(previous)
            raise ApplyError(f"could not restart nginx on generation {gen.number}: {exc}") \
                from None
        self.store.mark_good(gen)
        self.store.prune()
        now = self._served_or_none()
        if now is not None:
            live.mark_verified(self.settings.paths.nginx_verified, now.generation, now.split)
        return ApplyResult(action, before, target, gen.number, watch.ms(), verified=True,
                           note=note)

    def _restore(self, previous: nginx.Generation | None, gen: nginx.Generation,
                 why: str) -> str:
        """After a failed reload: `current` back to the previous generation, and nginx
        serving it, whatever it did late. Returns the failure message."""
        if previous is None:
            return why
        self.store.activate(previous)
        try:
            self._wait_settled()
            if self._served_generation() == gen.number:  # it loaded after all: undo that
                old_workers = self.host.proxy_worker_pids()
                offset = _size(self.host.proxy_error_log())
                self.host.signal_proxy_reload()
                self._verify(previous.number, old_workers, self.host.proxy_error_log(), offset,
                             gen.number)
        except (ApplyError, StackError) as exc:
            return f"{why}; and restoring generation {previous.number} failed: {exc}"
        self._set_aside(gen, "refused")
        return why

    def _served_generation(self) -> int | None:
        served = self._served_or_none()
        return served.config_generation if served else None

    def _wait_settled(self) -> None:
        """Wait until the master has handled every reload signal it was sent (an earlier
        reload may still retry a bind), so the next one is judged on its own."""
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        while self.host.proxy_reload_settled() is False:
            if time.monotonic() >= deadline:
                raise ApplyError(f"nginx is still busy with an earlier reload after "
                                 f"{VERIFY_TIMEOUT_S:.0f}s; nothing was changed")
            time.sleep(POLL_INTERVAL_S)

    def _refused(self, old_workers: set[int]) -> bool:
        """True once nginx has handled the reload and started no worker: it kept the old
        generation. Read in this order, a successful reload's workers exist by then."""
        if self.host.proxy_reload_settled() is not True:
            return False
        return not (self.host.proxy_worker_pids() - old_workers)

    def _verify(self, number: int, old_workers: set[int], log: Path, offset: int,
                old_generation: int | None) -> None:
        """Wait until new connections reach generation `number` and no old worker accepts,
        or until nginx is seen to have refused it.

        nginx's reload returns before the new workers exist, and the master keeps the old
        workers accepting for ~100 ms after starting the new ones: both are waited out here.
        """
        deadline = time.monotonic() + VERIFY_TIMEOUT_S
        last_error = "no answer yet"
        still = f"generation {old_generation} still serves" if old_generation else \
            "the previous generation still serves"
        while True:
            try:
                if self.served(timeout=0.5).config_generation == number:
                    break
                last_error = "still serving the previous generation"
            except ProxyUnreachable as exc:
                last_error = str(exc)
            if self._refused(old_workers):
                reason = _reload_errors(log, offset) or "it kept its old workers"
                raise ApplyError(f"nginx refused to load generation {number}: {reason}; {still}")
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


def free_after(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _reload_errors(log: Path, offset: int) -> str:
    """nginx's own reason for a refusal established otherwise: the last `[emerg]`/`[alert]`
    written since this reload's signal (the master handles one reload at a time, and vrm
    waited for the previous one to finish before signalling)."""
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = text.splitlines()
    mine = [i for i, ln in enumerate(lines) if f"received from {os.getpid()}," in ln]
    if mine:
        lines = lines[mine[-1]:]
    said: list[str] = []
    for line in lines:
        if "[emerg]" in line or "[alert]" in line:
            message = re.sub(r"^\d+#\d+: (\*\d+ )?", "", line.split("] ", 1)[-1])
            if message not in said:
                said.append(message)
    return "; ".join(said)


def _with_note(result: ApplyResult, note: str) -> ApplyResult:
    joined = "; ".join(n for n in (result.note, note) if n)
    return ApplyResult(result.action, result.before, result.after, result.generation,
                       result.duration_ms, result.verified, joined, result.journal_error)


def _d(split: Split | None) -> dict[str, int] | None:
    return split.as_dict() if split else None
