"""Every file in the state dir, named once.

The state dir holds what a deployment's vrm processes share: the journal, the write lock,
nginx config generations, process records, logs, migration state, reports. Modules ask
`StateDir` for a path; none of them spell a file name of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StateDir"]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout vrm runs from: nginx's template, configs/ (plans, requests, profiles)."""
CONFIGS = REPO_ROOT / "configs"


@dataclass(frozen=True)
class StateDir:
    """The paths under one deployment's state dir (`VRM_STATE_DIR`, default `.vrm`)."""

    root: Path

    def names(self) -> frozenset[str]:
        """The names vrm keeps at the top of the state dir: those of every path named here."""
        found = set()
        for attribute in vars(type(self)).values():
            if isinstance(attribute, property):
                path = attribute.fget(self) if attribute.fget else None
                if isinstance(path, Path) and self.root in path.parents:
                    found.add(path.relative_to(self.root).parts[0])
        return frozenset(found)

    def holds_only_vrms(self) -> bool:
        """Whether the folder holds nothing but what vrm keeps there (or nothing, or does not
        exist): only then may vrm make it private. A folder with anything else in it (a
        project folder named as the state dir) was not vrm's to change."""
        own = self.names()
        # Hidden files vrm keeps beside its own (`.journal.jsonl.*.tmp` renamed over
        # journal.jsonl, `.migration-unguarded-*`) start with a dot and one of its stems.
        temporary = tuple(f".{name.split('.')[0]}" for name in own)
        try:
            with os.scandir(self.root) as entries:
                return all(e.name in own or e.name.startswith(temporary) for e in entries)
        except FileNotFoundError:
            return True
        except OSError:
            return False

    @property
    def journal(self) -> Path:
        """Append-only JSONL of every action (who did what)."""
        return self.root / "journal.jsonl"

    @property
    def lock(self) -> Path:
        """The write lock: one traffic change, bring-up or tear-down at a time."""
        return self.root / "lock"

    @property
    def runtime_marker(self) -> Path:
        """Which runtime (local, compose) last brought this state dir up."""
        return self.root / "runtime"

    @property
    def nginx(self) -> Path:
        """Config generations (`gen-N/`) and the `current` link nginx runs from."""
        return self.root / "nginx"

    @property
    def nginx_split(self) -> Path:
        """The live split ("GENERATION RUST"), written before each zero-reload change and
        loaded by nginx at every start and reload: the disk stays the truth."""
        return self.nginx / "split"

    @property
    def nginx_verified(self) -> Path:
        """The last split nginx was seen serving ("GENERATION RUST"): a split file ahead of
        it was never verified, and a start serves this one instead."""
        return self.nginx / "split.verified"

    @property
    def nginx_secret(self) -> Path:
        """The key split changes are signed with (0600): nginx's master reads it at start
        and reload, and takes a change over `/vrm/split` only when it is signed with it."""
        return self.nginx / "secret"

    @property
    def nginx_splits_log(self) -> Path:
        """Every split written to `nginx_split`, with who asked, before it was set live."""
        return self.nginx / "splits.jsonl"

    @property
    def nginx_lua(self) -> Path:
        """The Lua source nginx loads (copied here so a container sees it too)."""
        return self.nginx / "lua"

    @property
    def nginx_temp(self) -> Path:
        return self.nginx / "tmp"

    @property
    def run(self) -> Path:
        """Process records (`<service>.json`) and nginx's pid file."""
        return self.root / "run"

    def run_record(self, service: str) -> Path:
        return self.run / f"{service}.json"

    @property
    def nginx_pid(self) -> Path:
        return self.run / "nginx.pid"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def service_log(self, service: str) -> Path:
        """The stdout/stderr log of a process vrm started."""
        return self.logs / f"{service}.log"

    @property
    def proxy_access_log(self) -> Path:
        """nginx's JSON access log: the source of every traffic statistic."""
        return self.logs / "proxy-access.log"

    @property
    def proxy_error_log(self) -> Path:
        return self.logs / "proxy-error.log"

    @property
    def migration(self) -> Path:
        """The migration's persisted state (survives the terminal that started it)."""
        return self.root / "migration.json"

    @property
    def migration_requests(self) -> Path:
        """The steering queue: one `<id>.request` per pause, resume, promote or abort, and
        the guard's `<id>.answer` to it (so two requests never overwrite each other)."""
        return self.root / "migration-requests"

    @property
    def migration_heartbeat(self) -> Path:
        """Written in place by the migration guard at least once a second (preallocated, so
        a full disk cannot stop the beat); names the migration it guards."""
        return self.root / "migration-heartbeat"

    @property
    def migration_guard_lock(self) -> Path:
        """Held by the one guard running the migration: two guards never run one."""
        return self.root / "migration-guard.lock"

    @property
    def prometheus(self) -> Path:
        """The local runtime's rendered Prometheus config, rules and data."""
        return self.root / "prometheus"

    @property
    def fleet_targets(self) -> Path:
        """Every live fleet host's scrape targets (Prometheus file_sd), rendered from etcd by
        the fleet agent; the local Prometheus's `fleet` job reads it."""
        return self.prometheus / "fleet-targets.json"

    @property
    def alertmanager(self) -> Path:
        """Alertmanager's rendered config (0600: it may hold route secrets) and its data."""
        return self.root / "alertmanager"

    @property
    def alerts_heard(self) -> Path:
        """The alerts vrm has journaled as firing, so each firing and each resolution is
        journaled once, whichever vrm process (guard, TUI) heard it."""
        return self.root / "alerts-heard.json"

    # --- parity (vrm_tui/parity) ----------------------------------------------------------

    @property
    def parity_state(self) -> Path:
        """Whether nginx mirrors (the sample an operator set) and the routes it may mirror."""
        return self.root / "parity-state.json"

    @property
    def parity_results(self) -> Path:
        """The comparator's counters per endpoint and path, rewritten every second."""
        return self.root / "parity-results.json"

    @property
    def parity_examples(self) -> Path:
        """The newest mismatch examples (request and three answers, redacted)."""
        return self.root / "parity-examples.json"

    @property
    def comparison(self) -> Path:
        """The latest benchmark comparison, served at /performance-comparison."""
        return self.root / "performance-comparison.json"

    @property
    def fleet_agent(self) -> Path:
        """The fleet agent's own record: the desired generation it applied, how far it read
        the journal, whether it is following, held or isolated (what `vrm fleet status` shows)."""
        return self.root / "fleet-agent.json"

    @property
    def fleet_agent_lock(self) -> Path:
        """Held by the running fleet agent for its whole life: one agent per state dir."""
        return self.root / "fleet-agent.lock"

    @property
    def fleet_held(self) -> Path:
        """Present while a local rollback holds this host at rust 0 against the fleet's
        desired split; `vrm fleet rejoin` removes it."""
        return self.root / "fleet-held"
