"""etcd, as the fleet uses it: keys, records, compare-and-set, leases, a wake-up watch.

The client is etcd's v3 JSON gateway over HTTP (etcd3gw's API), not aetcd (asyncio over
gRPC). Both did everything the fleet needs against Debian's etcd 3.4.23 (put/get, leases
that expire, compare-and-set transactions, watches within a few ms). The gateway is
synchronous like the rest of vrm (the controller, the guard and the CLI are threads and
plain calls, with no event loop to host an asyncio client), every request carries its own
timeout, so an unreachable etcd is one exception after a bounded wait (the agent's
"isolated"), and it needs no native gRPC build. The requests are plain JSON posts, sent
over one kept-alive stdlib connection per member (`_Member`): etcd3gw (requests, futurist
and their imports) and httpx (its imports and an SSL context) each cost `vrm fleet
rollback` more CPU than the rollback's own work, so etcd3gw is imported only for the agent's
watch. The watch only wakes the agent early: it also reads `desired` on every tick, so a
watch lost with a restarting etcd costs latency, never correctness.

Keys (DESIGN.md, README "Fleet"), all under `/vrm/<fleet>/`:
  desired            {generation, rust, by, at, reason, action}: moved only by
                     compare-and-set, with a journal record in the same transaction
  hosts/<host>       an agent's report, under its lease (TTL <= 3 s): a dead host disappears
  holds/<host>       an operator's rollback of one host from another (no lease: sticky like
                     a local rollback, until `vrm fleet rejoin` on that host)
  migration          reserved for fleet migrations (plan, step, phase, evidence)
  guard              reserved for the fleet guard's leader, under its lease
  journal/<id>       who did what, fleet-wide
"""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from vrm_tui.core.errors import Failure, FleetUnreachable, LeaseGone, StaleDesired

__all__ = ["Desired", "EtcdStore", "FleetUnreachable", "Hold", "HostReport", "Keys",
           "LeaseGone", "StaleDesired"]

REQUEST_TIMEOUT_S = 1.0  # one etcd request; a cluster electing a leader answers within it
WRITE_PATIENCE_S = 5.0  # how long an operator's write waits for a cluster to elect a leader
DesiredAction = Literal["deploy", "rollback", "migrate"]
MigrationPhase = Literal["running", "paused", "done", "rolled-back", "stopped"]
HostMode = Literal["following", "held", "isolated", "stopped"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Keys:
    """Every key of one fleet, named once."""

    fleet: str

    @property
    def root(self) -> str:
        return f"/vrm/{self.fleet}/"

    @property
    def desired(self) -> str:
        return self.root + "desired"

    @property
    def hosts(self) -> str:
        return self.root + "hosts/"

    def host(self, name: str) -> str:
        return self.hosts + name

    def hold(self, name: str) -> str:
        return self.root + "holds/" + name

    @property
    def migration(self) -> str:
        return self.root + "migration"

    @property
    def guard(self) -> str:
        return self.root + "guard"

    @property
    def journal(self) -> str:
        return self.root + "journal/"

    def journal_entry(self, host: str) -> str:
        """Sorted by time, unique per host and nanosecond."""
        return f"{self.journal}{time.time_ns():020d}-{host}"


@dataclass(frozen=True)
class Desired:
    """What every host of the fleet should serve; generations only go forward."""

    generation: int
    rust: int
    by: str
    at: str
    reason: str = ""
    action: DesiredAction = "deploy"
    hosts: dict[str, int] = field(default_factory=dict)  # per-host rust (a migration's waves)
    # A fleet rollback from a host that first rolled itself back (the TUI's `r`): that local
    # rollback, {host, pid, from, to} (its journal record's pid and a time window), which this
    # rollback covers, so its agent follows the fleet rather than holding the host
    covers: dict[str, Any] = field(default_factory=dict)

    def rust_for(self, host: str) -> int:
        return self.hosts.get(host, self.rust)

    @classmethod
    def from_json(cls, raw: bytes) -> Desired:
        data = json.loads(raw)
        action = data.get("action")
        return cls(int(data["generation"]), int(data["rust"]), str(data.get("by", "")),
                   str(data.get("at", "")), str(data.get("reason", "")),
                   action if action in ("rollback", "migrate") else "deploy",
                   {str(h): int(r) for h, r in (data.get("hosts") or {}).items()},
                   dict(data.get("covers") or {}))

    def covers_rollback(self, host: str, pid: int, at: str) -> bool:
        """Whether this is a fleet rollback that covers `host`'s local rollback by `pid` at
        `at` (a journal record's time): then it is not a hold but part of the fleet's."""
        c = self.covers
        return (self.action == "rollback" and c.get("host") == host and c.get("pid") == pid
                and str(c.get("from", "~")) <= at <= str(c.get("to", "")))


@dataclass(frozen=True)
class Hold:
    """An operator's rollback of one host, written from another (key `holds/<host>`)."""

    host: str
    by: str
    at: str
    reason: str = ""
    from_host: str = ""

    @classmethod
    def from_json(cls, raw: bytes) -> Hold:
        data = json.loads(raw)
        return cls(**{k: str(v) for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class FleetMigration:
    """A fleet migration (key `migration`): steps of rust weight, each rolled out in waves of
    hosts (a canary first), baked, and judged by the single-host migration's gates on the
    wave's hosts' counters, pooled and host by host (fleet/guard.py)."""

    id: str
    steps: list[int]
    waves: list[list[str]]  # host names, resolved at the start (the last wave: every host)
    bake_s: float
    max_error_rate: float  # the error-rate gate's ceiling (a plan's error_rate_fail)
    by: str
    started_at: str
    phase: MigrationPhase = "running"
    step: int = 0
    wave: int = 0
    generation: int = 0  # the desired generation of the current step and wave (0: not yet)
    entered_at: float = 0.0  # epoch it was written: the bake counts from here
    held: list[str] = field(default_factory=list)  # hosts the guard holds at rust 0
    reason: str = ""
    leader: str = ""
    # the last judgement: per host and "fleet" (the wave pooled), each {status, summary}
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    start_rust: int = 0  # the fleet's desired rust at the start: where the waves start from
    min_samples: int = 50  # a plan's min_samples: rust attempts (and latencies) a pass needs
    baseline: dict[str, Any] = field(default_factory=dict)  # the last step's typescript
    promote: bool = False  # resumed by an operator: an inconclusive bake goes on

    @property
    def active(self) -> bool:
        return self.phase in ("running", "paused")

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes) -> FleetMigration:
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class HostReport:
    """What one agent says its host serves (read back from its nginx), under its lease."""

    host: str
    generation: int  # the desired generation this host has taken (0: none yet)
    rust: int | None  # the rust weight nginx serves (None: nginx did not answer)
    mode: HostMode
    verified_at: str = ""  # when the split for `generation` was verified on this host
    apply_ms: float | None = None  # how long applying `generation` took on this host
    held_by: str = ""  # who rolled this host back locally (mode "held")
    error: str = ""  # the last apply's failure, if it failed
    health: dict[str, bool] = field(default_factory=dict)  # backend -> its health check passed
    # backend -> {rate (attempts/s), error_rate (last 10 s), p95_ms (last minute)} from the
    # host's access log; empty where it cannot be read
    traffic: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # per backend, every attempt since this host applied `generation` (what a fleet
    # migration's gates judge: only traffic after the change), summed from the access log's
    # per-second buckets: {generation, backends: {rust: {attempts, errors, retried,
    # latency_ms: {ms: count}}, typescript: {...}}}
    counters: dict[str, Any] = field(default_factory=dict)
    # rust's own VRAM gauge, as the single-host VRAM gate reads it: {used_gb, limit_gb,
    # reported, error} (empty: not read yet)
    rust_vram: dict[str, Any] = field(default_factory=dict)
    vram_used_gb: float | None = None  # every GPU of the host (None: no NVIDIA driver)
    vram_total_gb: float | None = None
    version: str = ""
    at: str = field(default_factory=now_iso)
    # this host's scrape targets as other hosts reach them, in Prometheus file_sd form
    # ([{targets: [host:port], labels: {job, service, host}}]; fleet/targets.py)
    targets: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: bytes) -> HostReport:
        data = json.loads(raw)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _b64(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


class EtcdStore:
    """One fleet's keys in etcd, over whichever endpoint answers (tried in turn)."""

    def __init__(self, fleet: str, endpoints: tuple[str, ...],
                 timeout: float = REQUEST_TIMEOUT_S) -> None:
        if not endpoints:
            raise FleetUnreachable("no etcd endpoints: set VRM_FLEET_ENDPOINTS")
        self.keys = Keys(fleet)
        self.endpoints = endpoints
        self.timeout = timeout
        self._members = [_Member(url, timeout) for url in endpoints]
        self._current = 0

    def _post(self, path: str, payload: dict[str, Any],
              patience: float = 0.0) -> dict[str, Any]:
        """POST `path` of the v3 gateway on the endpoint that answered last, then on each
        other in turn; again for `patience` seconds while none answers (a cluster electing a
        new leader)."""
        if len(self._members) == 1:
            patience = 0.0  # one member: no election to wait for
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._round(path, payload)
            except FleetUnreachable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _round(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for offset in range(len(self._members)):
            index = (self._current + offset) % len(self._members)
            try:
                status, body = self._members[index].post(path, payload)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{self.endpoints[index]}: {_why(exc)}")
                continue
            if status in UNAVAILABLE:
                errors.append(f"{self.endpoints[index]}: {UNAVAILABLE[status]}")
                continue
            if status != 200:  # a request etcd will not take (a lease gone, vrm's own bug)
                said = _said(body)
                gone = LeaseGone if "lease not found" in said else Failure
                raise gone(f"etcd at {self.endpoints[index]} refused {path}: "
                           f"{said} (HTTP {status})")
            try:
                found: dict[str, Any] = json.loads(body)
            except ValueError:
                raise Failure(f"{self.endpoints[index]} answered {path} with no JSON: "
                              "is it etcd's client URL?") from None
            self._current = index
            return found
        raise FleetUnreachable("etcd unreachable (" + "; ".join(errors) + ")")

    # --- reading ---------------------------------------------------------------------------

    def desired(self, patience: float = 0.0) -> tuple[Desired | None, int]:
        """The desired split and its key's mod revision (0 when there is none yet)."""
        found = self._post("/kv/range", {"key": _b64(self.keys.desired)}, patience)
        kvs = found.get("kvs") or []
        if not kvs:
            return None, 0
        value = base64.b64decode(kvs[0].get("value", ""))
        return Desired.from_json(value), int(kvs[0]["mod_revision"])

    def hosts(self) -> dict[str, HostReport]:
        """Every live host's report (a host whose lease expired has none)."""
        prefix = self.keys.hosts
        found = self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(_after(prefix))})
        reports = {}
        for kv in found.get("kvs") or []:
            try:
                report = HostReport.from_json(base64.b64decode(kv.get("value", "")))
            except (ValueError, TypeError, KeyError):
                continue  # a report vrm cannot read is no confirmation
            reports[report.host] = report
        return reports

    def journal(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest fleet journal records, oldest first."""
        prefix = self.keys.journal
        found = self._post("/kv/range", {"key": _b64(prefix), "range_end": _b64(_after(prefix)),
                                         "sort_order": 2, "sort_target": 0, "limit": limit})
        records = []
        for kv in found.get("kvs") or []:
            try:
                records.append(json.loads(base64.b64decode(kv.get("value", ""))))
            except ValueError:
                continue
        return list(reversed(records))

    # --- writing ---------------------------------------------------------------------------

    def look(self, host: str) -> tuple[Desired | None, Hold | None]:
        """An agent's one read per tick: `desired` and this host's hold, in one transaction
        (one round trip, one revision)."""
        answer = self._post("/kv/txn", {"compare": [], "success": [
            {"request_range": {"key": _b64(key)}}
            for key in (self.keys.desired, self.keys.hold(host))]})
        found: list[bytes | None] = []
        for response in answer.get("responses") or [{}, {}]:
            kvs = response.get("response_range", {}).get("kvs") or []
            found.append(base64.b64decode(kvs[0].get("value", "")) if kvs else None)
        desired, hold = found
        return (Desired.from_json(desired) if desired else None,
                Hold.from_json(hold) if hold else None)

    def write_desired(self, rust: int, by: str, reason: str, action: DesiredAction,
                      host: str, may_override: Callable[[Desired], bool],
                      covers: dict[str, Any] | None = None) -> Desired:
        """Move `desired` one generation forward by compare-and-set (with its journal record
        in the same transaction). When another writer moved it first, `may_override` decides
        on what it wrote: go on from there, or raise StaleDesired naming it."""
        while True:
            current, revision = self.desired(WRITE_PATIENCE_S)
            wanted = Desired((current.generation if current else 0) + 1, rust, by, now_iso(),
                             reason, action, covers=covers or {})
            body = json.dumps(asdict(wanted), separators=(",", ":"))
            record = json.dumps({"at": wanted.at, "by": by, "host": host, "action": action,
                                 "generation": wanted.generation, "rust": rust,
                                 "reason": reason}, separators=(",", ":"))
            compare = {"key": _b64(self.keys.desired), "result": "EQUAL", "target": "MOD",
                       "mod_revision": revision}
            txn = {"compare": [compare], "success": [
                {"request_put": {"key": _b64(self.keys.desired), "value": _b64(body)}},
                {"request_put": {"key": _b64(self.keys.journal_entry(host)),
                                 "value": _b64(record)}}]}
            answer = self._post("/kv/txn", txn, WRITE_PATIENCE_S)
            if answer.get("succeeded"):
                return wanted
            moved, _ = self.desired()
            if moved is not None and not may_override(moved):
                raise StaleDesired(
                    f"the fleet's desired split moved first: generation {moved.generation} "
                    f"({moved.action} to rust {moved.rust} by {moved.by}); nothing written")

    # --- a fleet migration and its guard's leader ---------------------------------------------

    def migration(self) -> tuple[FleetMigration | None, int]:
        found = self._post("/kv/range", {"key": _b64(self.keys.migration)})
        kvs = found.get("kvs") or []
        if not kvs:
            return None, 0
        return (FleetMigration.from_json(base64.b64decode(kvs[0].get("value", ""))),
                int(kvs[0]["mod_revision"]))

    def put_migration(self, migration: FleetMigration, revision: int) -> bool:
        """Write the migration if its key is still at `revision` (0: absent)."""
        return self._txn([self._unmoved(self.keys.migration, revision)],
                         [(self.keys.migration, migration.to_json())])

    def campaign(self, host: str, lease: int) -> int | None:
        """Be the fleet guard's leader, or stay it: the claim's create revision (what every
        leader action is fenced by), or None while another host leads."""
        claim = json.dumps({"host": host, "lease": lease, "since": now_iso()})
        key = _b64(self.keys.guard)
        answer = self._post("/kv/txn", {
            "compare": [{"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": 0}],
            "success": [{"request_put": {"key": key, "value": _b64(claim), "lease": lease}}],
            "failure": [{"request_range": {"key": key}}]})
        if answer.get("succeeded"):
            return int(answer["header"]["revision"])
        kvs = answer["responses"][0]["response_range"].get("kvs") or []
        if not kvs:
            return None
        held = json.loads(base64.b64decode(kvs[0].get("value", "")))
        if held.get("host") == host and int(kvs[0].get("lease", 0)) == lease:
            return int(kvs[0]["create_revision"])
        return None

    def leader(self) -> str | None:
        found = self._post("/kv/range", {"key": _b64(self.keys.guard)})
        kvs = found.get("kvs") or []
        return json.loads(base64.b64decode(kvs[0].get("value", ""))).get("host") if kvs else None

    def fenced(self, claim: int, host: str, migration: FleetMigration, migration_rev: int,
               desired: Desired | None = None, desired_rev: int = 0) -> bool:
        """A leader's action: the migration (and a new desired split), only while `claim` is
        still the guard's leadership and neither key moved since read; False otherwise."""
        compare = [{"key": _b64(self.keys.guard), "result": "EQUAL", "target": "CREATE",
                    "create_revision": claim},
                   self._unmoved(self.keys.migration, migration_rev)]
        puts = [(self.keys.migration, migration.to_json())]
        if desired is not None:
            compare.append(self._unmoved(self.keys.desired, desired_rev))
            puts.append((self.keys.desired, json.dumps(asdict(desired), separators=(",", ":"))))
            puts.append((self.keys.journal_entry(host), json.dumps({
                "at": desired.at, "by": desired.by, "host": host, "action": desired.action,
                "generation": desired.generation, "rust": desired.rust, "hosts": desired.hosts,
                "reason": desired.reason}, separators=(",", ":"))))
        return self._txn(compare, puts)

    def _unmoved(self, key: str, revision: int) -> dict[str, Any]:
        return {"key": _b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": revision}

    def _txn(self, compare: list[dict[str, Any]], puts: list[tuple[str, str]]) -> bool:
        answer = self._post("/kv/txn", {"compare": compare, "success": [
            {"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in puts]})
        return bool(answer.get("succeeded"))

    def hold(self, hold: Hold) -> None:
        """Hold `hold.host` at rust 0 (its agent obeys at once, woken by its watch), with its
        fleet journal record in the same transaction."""
        record = json.dumps({"at": hold.at, "by": hold.by, "host": hold.from_host,
                             "action": "hold", "detail": f"{hold.host}: {hold.reason}"},
                            separators=(",", ":"))
        self._post("/kv/txn", {"compare": [], "success": [
            {"request_put": {"key": _b64(self.keys.hold(hold.host)),
                             "value": _b64(json.dumps(asdict(hold)))}},
            {"request_put": {"key": _b64(self.keys.journal_entry(hold.from_host)),
                             "value": _b64(record)}}]}, WRITE_PATIENCE_S)

    def release(self, host: str) -> None:
        """Remove `host`'s hold (`vrm fleet rejoin` on it)."""
        self._post("/kv/deleterange", {"key": _b64(self.keys.hold(host))})

    def note(self, host: str, action: str, detail: str, by: str) -> None:
        """One fleet journal record (held, rejoined)."""
        record = json.dumps({"at": now_iso(), "by": by, "host": host, "action": action,
                             "detail": detail}, separators=(",", ":"))
        self._post("/kv/put", {"key": _b64(self.keys.journal_entry(host)),
                               "value": _b64(record)})

    def grant(self, ttl: int) -> int:
        """A new lease of `ttl` seconds; its id."""
        answer = self._post("/lease/grant", {"TTL": ttl, "ID": 0})
        return int(answer["ID"])

    def keep_alive(self, lease: int) -> bool:
        """Renew a lease; False when it has expired (its keys are gone)."""
        answer = self._post("/lease/keepalive", {"ID": lease})
        return int(answer.get("result", {}).get("TTL", -1)) > 0

    def report(self, report: HostReport, lease: int) -> None:
        self._post("/kv/put", {"key": _b64(self.keys.host(report.host)),
                               "value": _b64(report.to_json()), "lease": lease})

    def revoke(self, lease: int) -> None:
        """Give a lease up at once (an agent stopping): its report goes with it."""
        self._post("/kv/lease/revoke", {"ID": lease})

    def watch(self, wake: threading.Event, *keys: str) -> Callable[[], None]:
        """Set `wake` on every change of each key; returns the function that stops it."""
        import requests  # etcd3gw's: only the agent watches (see the module's docstring)
        from etcd3gw.client import Etcd3Client
        from etcd3gw.watch import Watcher

        member = self._members[self._current]
        client = Etcd3Client(host=member.host, port=member.port, protocol=member.scheme,
                             timeout=self.timeout, api_path="/v3/")
        watchers: list[Watcher] = []

        def stop() -> None:
            for watcher in watchers:
                watcher.stop()

        try:
            for key in keys:
                watchers.append(Watcher(client, key, lambda _event: wake.set()))
        except requests.RequestException as exc:
            stop()
            raise FleetUnreachable(f"etcd unreachable (watch: {exc})") from None
        return stop


UNAVAILABLE = {503: "unavailable (no leader?)", 500: "internal error",
               408: "timed out", 504: "timed out"}
"""Answers that say this member cannot serve now (another may): the next one is tried."""


class _Member:
    """One etcd member's v3 gateway over one kept-alive connection (a lock per member:
    the agent's loop and a TUI's threads may share a store)."""

    def __init__(self, url: str, timeout: float) -> None:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        self.scheme = parts.scheme or "http"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 2379
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def post(self, path: str, payload: dict[str, Any]) -> tuple[int, bytes]:
        """(status, body) of one JSON POST. A kept-alive connection the member closed
        meanwhile is dropped and the request sent once more on a new one; a timeout is
        not retried (the caller tries the next member)."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
            for fresh in (self._conn is None, True):
                conn = self._conn or self._connect()
                try:
                    conn.request("POST", "/v3" + path, body,
                                 {"Content-Type": "application/json"})
                    answer = conn.getresponse()
                    return answer.status, answer.read()
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    self._conn = None
                    stale = isinstance(exc, (http.client.RemoteDisconnected,
                                             BrokenPipeError, ConnectionResetError))
                    if fresh or not stale:
                        raise
            raise AssertionError("unreachable: the second try is on a fresh connection")

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" \
            else http.client.HTTPConnection
        self._conn = kind(self.host, self.port, timeout=self.timeout)
        return self._conn


def _why(exc: Exception) -> str:
    """A failed request in a few words."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError | http.client.HTTPException):
        return "no connection"
    return (str(exc).splitlines() or [type(exc).__name__])[0][:120]


def _said(body: bytes) -> str:
    """etcd's own words for a refusal (the gateway's JSON `error`), on one line."""
    try:
        said = json.loads(body).get("error")
    except (ValueError, AttributeError):
        said = None
    text = str(said) if said else body.decode("utf-8", "replace")
    return " ".join(text.split())[:200] or "no reason given"


def _after(prefix: str) -> str:
    """The first key past every key that starts with `prefix` (etcd's range end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
