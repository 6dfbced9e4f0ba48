"""The one exception hierarchy: every error vrm reports carries its exit code.

`cli.main` catches `VrmError` alone and exits with `error.exit_code`; anything else is a bug
and keeps its traceback.

    VrmError                 exit 1 unless a subclass says otherwise
    ├── BadInput             exit 2: a value the operator gave (flag, variable, file)
    │   ├── UsageError, SettingsError, SplitError                         flags, .env, weights
    │   ├── PlanError, ParityConfigError, RepeatError, CorpusError        the YAML files
    │   └── ProfileError, FaultError, ModelTooLarge                       the rehearsal backend
    └── Failure              exit 1: vrm could not do it; the previous config still serves
        ├── StackError       a runtime (processes, docker compose) could not do it
        ├── NginxMissing, NginxTestFailed, ApplyError (LockBusy)          traffic
        ├── ProxyUnreachable (SplitRefused)                               nginx's status port
        ├── PrometheusUnavailable, AlertmanagerUnavailable                telemetry
        ├── MigrationBusy                                                 migrate
        ├── FleetUnreachable, StaleDesired, LeaseGone                     fleet
        └── EngineMissing                                                 bench
    RequestFailed            not an error to report: one benchmark request's outcome

Every exception class vrm defines lives here (a test says so; only `system`, the layer below
core, keeps its own OSError), so a face or a test catches by one import and the exit code of
each is read in one place.
"""

from __future__ import annotations

import errno

__all__ = [
    "AlertmanagerUnavailable",
    "ApplyError",
    "BadInput",
    "EngineMissing",
    "Failure",
    "FaultError",
    "FleetUnreachable",
    "LeaseGone",
    "MigrationBusy",
    "ModelTooLarge",
    "NginxMissing",
    "NginxTestFailed",
    "ProfileError",
    "PrometheusUnavailable",
    "ProxyUnreachable",
    "RequestFailed",
    "StackError",
    "StaleDesired",
    "VrmError",
    "environment_fault",
    "shown",
]


class VrmError(Exception):
    """An error vrm explains in one line; `exit_code` is what the CLI exits with."""

    exit_code: int = 1


class BadInput(VrmError, ValueError):
    """A value the operator gave cannot be used; the message names it. Exit 2."""

    exit_code = 2


class Failure(VrmError, RuntimeError):
    """vrm could not do what was asked; the message says why and what still serves. Exit 1."""

    exit_code = 1


class StackError(Failure):
    """A runtime (local processes, docker compose) could not do what was asked; the message
    says what to do about it."""



# -- bad input: each names the setting, file or flag ---------------------------------------

class UsageError(BadInput):
    """Bad input from the operator: exit 2."""


class SettingsError(BadInput):
    """A setting has a value vrm cannot use; the message names the variable."""


class SplitError(BadInput):
    """A weight that is not a whole number from 0 to 100."""


class PlanError(BadInput):
    """A plan vrm cannot run; the message names the source and the setting."""


class ParityConfigError(BadInput):
    """A parity config that cannot be used; the one-line message names the file and the field."""


class RepeatError(BadInput):
    """A routes file that cannot be used; the message names the file and the entry."""


class CorpusError(BadInput):
    """A corpus file vrm cannot use; the message names the file and the field."""


# -- traffic: nginx and the split ----------------------------------------------------------

class NginxMissing(Failure):
    """No nginx binary; the message says how to install one."""


class NginxTestFailed(Failure):
    """`nginx -t` rejected a candidate; the message is nginx's own."""


class ProxyUnreachable(Failure):
    """nginx did not answer on its status endpoint; the message says how it failed."""


class ApplyError(Failure):
    """An action failed; the previous config is still serving. The message says why."""


class LockBusy(ApplyError):
    """Another vrm holds the write lock longer than this caller would wait."""


class SplitRefused(ProxyUnreachable):
    """nginx did not accept the change's signature: the key it loaded is not the state
    dir's (changed since its last start or reload). Only a reload fixes that."""



# -- telemetry -----------------------------------------------------------------------------

class PrometheusUnavailable(Failure):
    """Prometheus did not answer; the message says where it was looked for and why."""


class AlertmanagerUnavailable(Failure):
    """Alertmanager did not answer (or refused); the message says where and why."""


# -- migrate, fleet, bench -----------------------------------------------------------------

class MigrationBusy(Failure):
    """Another guard runs a migration, or an unfinished one waits to be resumed."""


class FleetUnreachable(Failure):
    """No etcd endpoint answered; the message names them."""


class LeaseGone(Failure):
    """etcd no longer has the lease a request names (it expired while its holder waited, or
    was revoked): the holder's keys went with it; it takes a new lease."""


class StaleDesired(Failure):
    """The desired split moved under a writer that may not override what moved it."""


class EngineMissing(Failure):
    """The external tool is not installed; the message says how to get it."""


class RequestFailed(Exception):
    """A benchmark request got no complete response; `kind` is a short label for counting.
    Not a VrmError: the engine counts it, nobody reports it."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# -- rehearsal: the stand-in backend's own bad input ---------------------------------------

class ProfileError(BadInput):
    """A profile file that cannot be used; the message names the file and the key."""


class FaultError(BadInput):
    """A fault setting that makes no sense; the message names it."""


class ModelTooLarge(BadInput):
    """A model that cannot fit even into empty VRAM."""


def shown(value: object, limit: int = 80) -> str:
    """The value as the operator wrote it, cut short: a 5000-digit number or a path past the
    OS limit still makes a one-line error that names it."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str | bytes) else ""
    return text[:limit - 3] + "..." + size


# What the host did, in the words an operator searches for (DESIGN: exit 1, one line).
_FAULTS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def environment_fault(exc: OSError, where: object = None, *,
                      target: object = None) -> Failure | None:
    """An OSError that is the host's doing (a full disk, a read-only mount, permissions) as
    one Failure naming the path: `target` (the file being written, not the temporary file
    beside it), else the error's own, else `where` (a failed write() names none); None for
    any other error, which is a bug and keeps its traceback."""
    what = _FAULTS.get(exc.errno or 0)
    if what is None:
        return None
    path = next((p for p in (target, exc.filename, where) if p is not None), None)
    return Failure(f"{what} at {path}" if path is not None else what)
