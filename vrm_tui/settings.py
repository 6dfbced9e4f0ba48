"""One validated Settings object, read from flags > environment > `.env` > defaults.

The seed's variable names and defaults are a public interface: operators have them in
their `.env` files and muscle memory. Every bad value becomes one `SettingsError` that
names the variable, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import socket
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vrm_tui.core import address, repeat
from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import BadInput, SettingsError, SplitError, shown
from vrm_tui.core.paths import StateDir
from vrm_tui.core.repeat import SafeToRepeat
from vrm_tui.core.split import Split, parse_weight

RuntimeName = Literal["local", "compose"]
"""Where the stack runs: local processes or docker compose."""
RUNTIMES: tuple[RuntimeName, ...] = ("local", "compose")
# compose: vrm's rehearsal backends, the team's images with a GPU each, or the same images
# without a GPU reservation (a staging or CI host without one); stack.compose.OVERLAYS
COMPOSE_PROFILES = ("rehearsal", "production", "production-cpu")
PROCESS_ROUTE = "/api/v1/vision/process"  # the seed's vision task (the template's own location)


def _parse_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines (comments, blank lines, `export` and quotes allowed).

    Read as bytes so that a line that is not UTF-8 is reported with its number. A key that
    is not vrm's but within two edits of one is a typo that would silently do nothing."""
    values: dict[str, str] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return values
    except IsADirectoryError:
        raise SettingsError(f"{path}: is a directory, expected a file of KEY=VALUE lines") \
            from None
    except OSError as exc:
        raise SettingsError(f"{shown(str(path), 200)}: cannot read it: {exc.strerror}") from None
    for number, raw_bytes in enumerate(data.splitlines(), start=1):
        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise SettingsError(f"{path}:{number}: not valid UTF-8") from None
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if _CONTROL.search(line):
            raise SettingsError(f"{path}:{number}: contains a control character")
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()):
            raise SettingsError(f"{path}:{number}: expected KEY=VALUE, got {shown(raw)}")
        meant = _near_miss(key.strip())
        if meant is not None:
            raise SettingsError(f"{path}:{number}: {key.strip()} is not a vrm setting; "
                                f"did you mean {meant}?")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].strip()
        values[key.strip()] = value
    return values


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
# Characters a path may not hold: it is written into nginx's config unquoted.
_PATH_UNSAFE = re.compile(r"[\s;{}'\"$#\\`\x00-\x1f\x7f]")


def _near_miss(key: str) -> str | None:
    """The known key `key` misspells (at most two edits, any case), None if none is near."""
    if key in _KNOWN:
        return None
    upper = key.upper()
    distance, meant = min((_edits(upper, known), known) for known in _KNOWN)
    return meant if distance <= 2 else None


def _edits(a: str, b: str) -> int:
    """Levenshtein distance, with adjacent transpositions counted as one edit (WIEGHT)."""
    if abs(len(a) - len(b)) > 2:
        return 3  # farther than any near miss; saves the table
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            row.append(cost)
        previous2, previous = previous, row
    return previous[-1]


def _int(name: str, raw: str, low: int = 1, high: int = 65535) -> int:
    try:
        return address.parse_int(name, raw, low, high)
    except BadInput as exc:
        raise SettingsError(str(exc)) from None


def _canary(raw: str, upstream: str) -> int | None:
    """PROXY_CANARY_TIMEOUT: `auto` (None), or whole seconds from 1 to the upstream timeout."""
    if raw.strip().lower() == "auto":
        return None
    ceiling = _int("PROXY_UPSTREAM_TIMEOUT", upstream, low=1, high=3600)
    try:
        return address.parse_int("PROXY_CANARY_TIMEOUT", raw, 1, ceiling)
    except BadInput:
        raise SettingsError(f"PROXY_CANARY_TIMEOUT={shown(raw)}: expected auto, or whole "
                            f"seconds from 1 to PROXY_UPSTREAM_TIMEOUT ({ceiling})") from None


def _float(name: str, raw: str) -> float:
    text = raw.strip()
    if not _FLOAT.fullmatch(text):
        raise SettingsError(f"{name}={shown(raw)}: expected a number such as 20.0")
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise SettingsError(f"{name}={shown(raw)}: expected a positive number")
    return value


def _flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={shown(raw)}: expected 1 or 0")


def parse_sample(name: str, raw: str) -> float:
    """A parity sample: percent of balanced requests mirrored, 0 (off) to 100, at most two
    decimals (nginx's split_clients granularity)."""
    text = raw.strip().removesuffix("%")
    if not re.fullmatch(r"\d{1,3}(\.\d{1,2})?", text) or not 0 <= float(text) <= 100:
        raise SettingsError(f"{name}={shown(raw)}: expected a percent from 0 (off) to 100, "
                            "e.g. 5 or 0.5")
    return float(text)


def _bind(name: str, raw: str) -> str:
    try:
        return address.parse_ip(name, raw)
    except BadInput as exc:
        raise SettingsError(str(exc)) from None


_KEYMAP_ENTRY = re.compile(r"([a-z][a-z0-9.-]*)=([A-Za-z0-9_+,-]+)")


def parse_keymap(name: str, raw: str) -> tuple[tuple[str, str], ...]:
    """`id=keys;id=keys` (keys comma-separated, Textual's names: `L`, `ctrl+l`, `plus`)."""
    found: list[tuple[str, str]] = []
    for entry in (e.strip() for e in raw.split(";")):
        if not entry:
            continue
        match = _KEYMAP_ENTRY.fullmatch(entry)
        if match is None:
            raise SettingsError(f"{name}: {shown(entry)}: expected binding-id=keys, such as "
                                "vrm.logs=L or vrm.rust-up=u,U")
        found.append((match.group(1), match.group(2)))
    return tuple(found)


def _path(name: str, raw: str) -> str:
    value = raw.strip() or "/health"
    if not re.fullmatch(r"/[A-Za-z0-9._~%/-]*", value):
        raise SettingsError(f"{name}={shown(raw)}: expected a URL path such as /health")
    return value


def _url(name: str, raw: str) -> str:
    """The base URL rebuilt from its parsed parts: nothing else of `raw` is kept."""
    try:
        return str(address.parse_backend_url(name, raw))
    except BadInput as exc:
        raise SettingsError(str(exc)) from None


def _resolved(name: str, path: Path) -> Path:
    """`path` made absolute with its links followed; a symlink loop or a name past the OS's
    limits is one error naming the setting."""
    try:
        return path.resolve()
    except RuntimeError:  # Python 3.11 reports a symlink loop this way
        raise SettingsError(f"{name}={shown(str(path))}: a symlink loop") from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise SettingsError(f"{name}={shown(str(path))}: {reason}") from None


def deploy_dir_path(name: str, path: Path) -> Path:
    """`path` resolved: an existing folder (it holds `.env` and `configs/`)."""
    path = _resolved(name, path)
    try:
        if path.is_dir():
            return path
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise SettingsError(f"{name}={shown(str(path))}: {reason}") from None
    raise SettingsError(f"{name}={shown(str(path))}: not a directory")


def state_dir_path(name: str, path: Path) -> Path:
    """`path` resolved: a state dir nginx's config can name (unquoted), that the OS can name
    (no symlink loop, within its length limits), and that is, or can become, a folder of
    vrm's own. A folder others may write to (/tmp, mode 1777) is refused, not chmodded: vrm
    keeps its secret and its lock there, and changes no folder it did not create."""
    path = _resolved(name, path)
    try:
        found = next(((f, f.stat()) for f in (path, *path.parents)
                      if f.exists() or f.is_symlink()), None)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise SettingsError(f"{name}={shown(str(path))}: {reason}") from None
    text = str(path)
    if _PATH_UNSAFE.search(text) or not text.isprintable():
        raise SettingsError(f"{name}={shown(text)}: a state dir path may not contain "
                            "whitespace, quotes or any of ; {{ }} $ # \\ `")
    if found is not None:
        folder, info = found
        if not stat.S_ISDIR(info.st_mode):
            what = "is" if folder == path else f"is under {folder}, which is"
            raise SettingsError(f"{name}={shown(text)}: {what} not a directory")
        if folder == path and info.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
            raise SettingsError(f"{name}={shown(text)}: a folder everyone may write to (mode "
                                f"{info.st_mode & 0o7777:o}); name a folder of vrm's own "
                                f"inside it, e.g. {path / 'vrm'}")
    return path


@dataclass(frozen=True)
class Settings:
    """Everything vrm needs to know about one deployment."""

    split: Split = field(default_factory=lambda: Split(10))
    max_vram_gb: float = 20.0
    proxy_port: int = 3000
    proxy_bind: str = "0.0.0.0"
    proxy_status_port: int = 3010
    rust_port: int = 3001
    ts_port: int = 3002
    prometheus_port: int = 9090
    grafana_port: int = 3003
    nginx_exporter_port: int = 9113
    monitoring: bool = True
    grafana_password: str = ""
    proxy_rate_limit: int = 100
    proxy_keepalive_timeout: int = 65
    proxy_upstream_timeout: int = 30  # PROXY_UPSTREAM_TIMEOUT: seconds before an attempt fails
    # PROXY_CANARY_TIMEOUT: seconds a rust attempt may take while rust takes traffic; None:
    # "auto", derived from typescript's latency (telemetry/canary.py)
    proxy_canary_timeout: int | None = None
    # PROXY_RETRY_PROCESS: POST /process may be retried; None: as configs/routes.yaml says
    proxy_retry_process: bool | None = None
    live_split: bool = True  # VRM_LIVE_SPLIT: weight changes without a reload (Lua module)
    runtime: RuntimeName | None = None  # None = detect: see stack.lifecycle.runtime_for
    compose_profile: str = "rehearsal"
    base_image: str = "debian:bookworm-slim"
    build_network: str = "default"
    rust_url: str | None = None
    ts_url: str | None = None
    deploy_dir: Path = field(default_factory=Path.cwd)
    state_dir: Path = field(default_factory=lambda: Path.cwd() / ".vrm")
    rehearsal_faults: bool = True
    # REHEARSAL_RUST_ADMIN_PORT / REHEARSAL_TS_ADMIN_PORT: the rehearsal backends' fault
    # endpoints (loopback); None: a free port chosen at start (`vrm status` shows it)
    rehearsal_admin_ports: dict[str, int | None] = field(default_factory=dict)
    nginx_bin: str | None = None  # VRM_NGINX_BIN; None: PATH, then /usr/sbin
    compose_project_name: str = ""  # COMPOSE_PROJECT_NAME; "": derived from the state dir
    # --- parity (vrm parity) ---
    parity_sample: float = 0.0  # PARITY_SAMPLE: percent of balanced requests mirrored; 0 off
    parity_port: int = 3011  # PARITY_PORT: the comparator, on loopback
    parity_max_rps: float = 20.0  # PARITY_MAX_RPS: samples compared a second (3 calls each)
    health_path: str = "/health"  # VRM_HEALTH_PATH: where the backends answer health checks
    requests: str = ""  # VRM_REQUESTS: a request set in configs/requests/, or a corpus file
    # VRM_KEYMAP: the TUI's keys rebound by binding id, "vrm.logs=L;vrm.rust-up=u,U"
    # (rollback stays on r / ctrl+r whatever it says; ids: tui/actions.py)
    keymap: tuple[tuple[str, str], ...] = ()
    # VRM_MIGRATION_PLAN: the plan `m` and `vrm migrate` start (relative: to the deploy dir);
    # None: configs/migration.yaml
    migration_plan: Path | None = None
    rehearsal: bool = True  # the rehearsal backends run (no backend URLs, not production)
    # --- fleet (vrm fleet, vrm agent): one split for many hosts, steered through etcd ---
    fleet: str = ""  # VRM_FLEET: the fleet's name ("" = this host is no fleet's)
    fleet_endpoints: tuple[str, ...] = ()  # VRM_FLEET_ENDPOINTS: etcd client URLs
    fleet_host: str = ""  # VRM_FLEET_HOST: this host's name in the fleet (default: hostname)
    fleet_ttl: int = 3  # VRM_FLEET_TTL: seconds a silent host's report outlives it (1-3)
    # VRM_FLEET_ISOLATED_ROLLBACK: seconds cut off from etcd before the agent sets rust 0
    # (0: never; an isolated agent only ever keeps its split)
    fleet_isolated_rollback_s: int = 0
    fleet_confirm_timeout: int = 10  # VRM_FLEET_CONFIRM_TIMEOUT: seconds a rollback waits
    # VRM_FLEET_ADVERTISE: the address other hosts reach this one at (its scrape targets in
    # the fleet's Prometheus service discovery); default: the host name
    fleet_advertise: str = ""
    # --- alerts (Alertmanager; routes rendered into alertmanager.yml, secrets stay in .env) ---
    alertmanager_port: int = 9093  # ALERTMANAGER_PORT: on loopback (and, in a fleet, advertised)
    # ALERTMANAGER_CLUSTER_PORT: in a fleet, Alertmanager's gossip port on VRM_FLEET_ADVERTISE:
    # the fleet's Alertmanagers form one cluster, so an alert is notified once, not per host
    alertmanager_cluster_port: int = 9094
    # ALERTMANAGER_PEER_TIMEOUT: in a fleet, how long each Alertmanager waits after the one
    # before it to see (by gossip) that a notification went out; Alertmanager's own default
    alertmanager_peer_timeout: str = "15s"
    alert_webhook_urls: tuple[str, ...] = ()  # ALERT_WEBHOOK_URLS: comma-separated JSON webhooks
    alert_slack_webhook_url: str = ""  # ALERT_SLACK_WEBHOOK_URL: a Slack incoming webhook
    alert_email_to: str = ""  # ALERT_EMAIL_TO: where alert mail goes (needs ALERT_SMTP_*)
    alert_smtp_smarthost: str = ""  # ALERT_SMTP_SMARTHOST: host:port of the mail relay
    alert_smtp_from: str = ""  # ALERT_SMTP_FROM
    alert_smtp_username: str = ""  # ALERT_SMTP_USERNAME
    alert_smtp_password: str = ""  # ALERT_SMTP_PASSWORD
    alert_smtp_require_tls: bool = True  # ALERT_SMTP_REQUIRE_TLS
    alert_group_wait: str = "30s"  # ALERT_GROUP_WAIT: before a new group's first notification
    alert_group_interval: str = "5m"  # ALERT_GROUP_INTERVAL: between a group's updates
    alert_repeat_interval: str = "4h"  # ALERT_REPEAT_INTERVAL: before a still-firing repeat
    # ALERT_RULE_FOR: every rule's `for:` replaced (rehearsals, tests); "": as shipped
    alert_rule_for: str = ""
    # PROMETHEUS_SCRAPE_INTERVAL / PROMETHEUS_EVALUATION_INTERVAL; "": prometheus.yml's
    prometheus_scrape_interval: str = ""
    prometheus_evaluation_interval: str = ""

    @property
    def paths(self) -> StateDir:
        """Every file in the state dir, named once."""
        return StateDir(self.state_dir)

    def safe_to_repeat(self) -> SafeToRepeat:
        """Which requests may be repeated (retried, replayed): configs/routes.yaml."""
        return repeat.load(self.deploy_dir, self.rehearsal)

    @property
    def retry_process(self) -> bool:
        """Whether nginx may retry POST /api/v1/vision/process on the other backend:
        PROXY_RETRY_PROCESS when set, else the routes declaration."""
        if self.proxy_retry_process is not None:
            return self.proxy_retry_process
        return self.safe_to_repeat().allows("POST", PROCESS_ROUTE)

    @property
    def compose_project(self) -> str:
        """The compose project: COMPOSE_PROJECT_NAME, else `vrm-` and a hash of the state dir,
        so two deployments (or a test run beside a real stack) on one host never share one."""
        if self.compose_project_name:
            return self.compose_project_name
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:10]
        return f"vrm-{digest}"

    @property
    def rust_address(self) -> str:
        """host:port nginx uses for the Rust backend."""
        return _address(self.rust_url, self.rust_port)

    @property
    def ts_address(self) -> str:
        """host:port nginx uses for the TypeScript backend."""
        return _address(self.ts_url, self.ts_port)

    @property
    def backend_addresses(self) -> dict[str, Backend]:
        """nginx's upstream address of each backend -> the backend (to read access logs)."""
        return {self.rust_address: Backend.RUST, self.ts_address: Backend.TYPESCRIPT}

    @property
    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by its setting's name (monitoring's only when
        monitoring runs: Grafana beside Prometheus)."""
        ports = {
            "PROXY_PORT": self.proxy_port,
            "PROXY_STATUS_PORT": self.proxy_status_port,
            "VISION_MANAGER_PORT": self.rust_port,
            "TS_VISION_MANAGER_PORT": self.ts_port,
            "PARITY_PORT": self.parity_port,
        }
        if self.monitoring:
            ports["PROMETHEUS_PORT"] = self.prometheus_port
            ports["NGINX_EXPORTER_PORT"] = self.nginx_exporter_port
            ports["GRAFANA_PORT"] = self.grafana_port
            ports["ALERTMANAGER_PORT"] = self.alertmanager_port
            if self.fleet:
                ports["ALERTMANAGER_CLUSTER_PORT"] = self.alertmanager_cluster_port
        return ports

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    def backend_url(self, backend: Backend | str) -> str:
        """Base URL of a backend as vrm reaches it directly (health probes, metrics)."""
        url = self.rust_url if backend == Backend.RUST else self.ts_url
        port = self.rust_port if backend == Backend.RUST else self.ts_port
        return url or f"http://127.0.0.1:{port}"


def _address(url: str | None, port: int) -> str:
    if url is None:
        return f"127.0.0.1:{port}"
    return str(address.parse_backend_url("backend URL", url).address)


def load(
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    deploy_dir: Path | None = None,
) -> Settings:
    """Build Settings from flags > environment > `<deploy_dir>/.env` > defaults.

    `flags` uses the environment variable names as keys (None means "not given").
    """
    environ = os.environ if environ is None else environ
    base = _resolved("VRM_DEPLOY_DIR", Path(deploy_dir or environ.get("VRM_DEPLOY_DIR")
                                            or Path.cwd()))
    layered: dict[str, str] = _parse_env_file(base / ".env")
    layered.update({k: v for k, v in environ.items() if k in _KNOWN})
    given_flags = {k: str(v) for k, v in (flags or {}).items() if v is not None}
    layered.update(given_flags)

    if "RUST_BACKEND_WEIGHT" in given_flags:
        # A weight on the command line is the whole split; the other side follows from it.
        layered.pop("TS_BACKEND_WEIGHT", None)
    split = _split(layered)

    runtime = layered.get("VRM_RUNTIME", "").strip()
    if runtime and runtime not in RUNTIMES:
        raise SettingsError(f"VRM_RUNTIME={shown(runtime)}: expected one of {', '.join(RUNTIMES)}")
    profile = layered.get("VRM_COMPOSE_PROFILE", "rehearsal").strip() or "rehearsal"
    if profile not in COMPOSE_PROFILES:
        raise SettingsError(f"VRM_COMPOSE_PROFILE={shown(profile)}: expected one of "
                            f"{', '.join(COMPOSE_PROFILES)}")
    preference = layered.get("BACKEND_PREFERENCE", "rust").strip() or "rust"
    if preference == "typescript":
        # The seed's meaning ("primary backend") is the migration's direction: rust is the
        # primary, typescript the fallback that takes retries and the backup role. A deployment
        # that prefers typescript is not migrating; saying so beats silently ignoring it.
        raise SettingsError("BACKEND_PREFERENCE=typescript has no effect in vrm: rust is the "
                            "primary and typescript the fallback; set the split with "
                            "RUST_BACKEND_WEIGHT (0 sends rust nothing) or remove the line")
    if preference != "rust":
        raise SettingsError(f"BACKEND_PREFERENCE={shown(preference)}: expected rust")

    state_raw = layered.get("VRM_STATE_DIR", "").strip()
    state_dir = Path(state_raw) if state_raw else base / ".vrm"
    if not state_dir.is_absolute():
        state_dir = base / state_dir
    state_dir = state_dir_path("VRM_STATE_DIR", state_dir)

    # The rehearsal backends' process endpoint has no side effects: retrying it is safe.
    rehearsal = not (layered.get("RUST_BACKEND_URL", "").strip()
                     or layered.get("TS_BACKEND_URL", "").strip()) and (
        runtime != "compose" or profile == "rehearsal")

    def opt_url(name: str) -> str | None:
        raw = layered.get(name, "").strip()
        return _url(name, raw) if raw else None

    settings = Settings(
        split=split,
        max_vram_gb=_float("MAX_VRAM_GB", layered.get("MAX_VRAM_GB", "20.0")),
        proxy_port=_int("PROXY_PORT", layered.get("PROXY_PORT", "3000")),
        proxy_bind=_bind("PROXY_BIND", layered.get("PROXY_BIND", "0.0.0.0")),
        proxy_status_port=_int("PROXY_STATUS_PORT", layered.get("PROXY_STATUS_PORT", "3010")),
        rust_port=_int("VISION_MANAGER_PORT", layered.get("VISION_MANAGER_PORT", "3001")),
        ts_port=_int("TS_VISION_MANAGER_PORT", layered.get("TS_VISION_MANAGER_PORT", "3002")),
        prometheus_port=_int("PROMETHEUS_PORT", layered.get("PROMETHEUS_PORT", "9090")),
        grafana_port=_int("GRAFANA_PORT", layered.get("GRAFANA_PORT", "3003")),
        nginx_exporter_port=_int("NGINX_EXPORTER_PORT",
                                 layered.get("NGINX_EXPORTER_PORT", "9113")),
        monitoring=_flag("VRM_MONITORING", layered.get("VRM_MONITORING", "1")),
        grafana_password=layered.get("GRAFANA_PASSWORD", ""),
        proxy_rate_limit=_int(
            "PROXY_RATE_LIMIT", layered.get("PROXY_RATE_LIMIT", "100"), low=0, high=1_000_000
        ),
        proxy_keepalive_timeout=_int(
            "PROXY_KEEPALIVE_TIMEOUT", layered.get("PROXY_KEEPALIVE_TIMEOUT", "65"), low=0,
            high=3600
        ),
        proxy_upstream_timeout=_int(
            "PROXY_UPSTREAM_TIMEOUT", layered.get("PROXY_UPSTREAM_TIMEOUT", "30"), low=1,
            high=3600),
        proxy_canary_timeout=_canary(layered.get("PROXY_CANARY_TIMEOUT", "auto"),
                                     layered.get("PROXY_UPSTREAM_TIMEOUT", "30")),
        proxy_retry_process=(_flag("PROXY_RETRY_PROCESS", layered["PROXY_RETRY_PROCESS"])
                             if layered.get("PROXY_RETRY_PROCESS", "").strip() else None),
        live_split=_flag("VRM_LIVE_SPLIT", layered.get("VRM_LIVE_SPLIT", "1")),
        runtime=runtime or None,
        compose_profile=profile,
        base_image=layered.get("VRM_BASE_IMAGE", "").strip() or "debian:bookworm-slim",
        build_network=layered.get("VRM_BUILD_NETWORK", "").strip() or "default",
        rust_url=opt_url("RUST_BACKEND_URL"),
        ts_url=opt_url("TS_BACKEND_URL"),
        deploy_dir=base,
        state_dir=state_dir,
        rehearsal_faults=_flag("VRM_REHEARSAL_FAULTS", layered.get("VRM_REHEARSAL_FAULTS", "1")),
        rehearsal_admin_ports={
            backend: _int(name, layered[name]) if layered.get(name, "").strip() else None
            for backend, name in (("rust", "REHEARSAL_RUST_ADMIN_PORT"),
                                  ("typescript", "REHEARSAL_TS_ADMIN_PORT"))},
        nginx_bin=layered.get("VRM_NGINX_BIN", "").strip() or None,
        compose_project_name=_project(layered.get("COMPOSE_PROJECT_NAME", "").strip()),
        parity_sample=parse_sample("PARITY_SAMPLE", layered.get("PARITY_SAMPLE", "0")),
        parity_port=_int("PARITY_PORT", layered.get("PARITY_PORT", "3011")),
        parity_max_rps=_float("PARITY_MAX_RPS", layered.get("PARITY_MAX_RPS", "20")),
        health_path=_path("VRM_HEALTH_PATH", layered.get("VRM_HEALTH_PATH", "/health")),
        requests=layered.get("VRM_REQUESTS", "").strip(),
        keymap=parse_keymap("VRM_KEYMAP", layered.get("VRM_KEYMAP", "")),
        migration_plan=(base / plan) if (plan := layered.get("VRM_MIGRATION_PLAN", "").strip())
        else None,
        rehearsal=rehearsal,
        **_alerts(layered),
        **_fleet(layered),
    )
    _check_ports(settings)
    return settings


_DURATION = re.compile(r"([0-9]+(ms|s|m|h|d|w|y))+")
_WEBHOOK = re.compile(r"https?://[^\s/?#@]+(/[^\s]*)?")


def _duration(name: str, raw: str, default: str) -> str:
    """A Prometheus/Alertmanager duration such as 30s, 5m or 1h30m ("" keeps `default`)."""
    text = raw.strip()
    if not text:
        return default
    if not _DURATION.fullmatch(text) or not any(c != "0" for c in re.sub(r"\D", "", text)):
        raise SettingsError(f"{name}={shown(raw)}: expected a duration above 0 such as 30s, "
                            "5m or 1h30m")
    return text


def _webhook(name: str, raw: str) -> str:
    text = raw.strip()
    if not _WEBHOOK.fullmatch(text):
        raise SettingsError(f"{name}={shown(raw)}: expected an http(s) URL such as "
                            "https://hooks.example.com/alerts")
    return text


def _alerts(layered: Mapping[str, str]) -> dict[str, Any]:
    """The alert routes and timings; each bad value names its variable. Alertmanager's own
    check (`amtool check-config`) runs on the rendered file at setup and up."""
    def get(name: str, default: str = "") -> str:
        return layered.get(name, default).strip()

    email = get("ALERT_EMAIL_TO")
    if email and not all(re.fullmatch(r"[^@\s,]+@[^@\s,]+", a.strip())
                         for a in email.split(",")):
        raise SettingsError(f"ALERT_EMAIL_TO={shown(email)}: expected addresses such as "
                            "oncall@example.com, comma-separated")
    smarthost = get("ALERT_SMTP_SMARTHOST")
    if smarthost:
        try:
            address.parse_hostport("ALERT_SMTP_SMARTHOST", smarthost)
        except BadInput as exc:
            raise SettingsError(str(exc)) from None
    if email and not smarthost:
        raise SettingsError(f"ALERT_EMAIL_TO={shown(email)}: needs ALERT_SMTP_SMARTHOST "
                            "(host:port of the mail relay)")
    if email and not get("ALERT_SMTP_FROM"):
        raise SettingsError(f"ALERT_EMAIL_TO={shown(email)}: needs ALERT_SMTP_FROM")
    slack = get("ALERT_SLACK_WEBHOOK_URL")
    return {
        "alertmanager_port": _int("ALERTMANAGER_PORT", get("ALERTMANAGER_PORT", "9093")),
        "alertmanager_cluster_port": _int("ALERTMANAGER_CLUSTER_PORT",
                                          get("ALERTMANAGER_CLUSTER_PORT", "9094")),
        "alertmanager_peer_timeout": _duration("ALERTMANAGER_PEER_TIMEOUT",
                                               get("ALERTMANAGER_PEER_TIMEOUT"), "15s"),
        "alert_webhook_urls": tuple(_webhook("ALERT_WEBHOOK_URLS", url)
                                    for url in get("ALERT_WEBHOOK_URLS").split(",")
                                    if url.strip()),
        "alert_slack_webhook_url": _webhook("ALERT_SLACK_WEBHOOK_URL", slack) if slack else "",
        "alert_email_to": email,
        "alert_smtp_smarthost": smarthost,
        "alert_smtp_from": get("ALERT_SMTP_FROM"),
        "alert_smtp_username": get("ALERT_SMTP_USERNAME"),
        "alert_smtp_password": layered.get("ALERT_SMTP_PASSWORD", ""),
        "alert_smtp_require_tls": _flag("ALERT_SMTP_REQUIRE_TLS",
                                        get("ALERT_SMTP_REQUIRE_TLS", "1") or "1"),
        "alert_group_wait": _duration("ALERT_GROUP_WAIT", get("ALERT_GROUP_WAIT"), "30s"),
        "alert_group_interval": _duration("ALERT_GROUP_INTERVAL", get("ALERT_GROUP_INTERVAL"),
                                          "5m"),
        "alert_repeat_interval": _duration("ALERT_REPEAT_INTERVAL",
                                           get("ALERT_REPEAT_INTERVAL"), "4h"),
        "alert_rule_for": _duration("ALERT_RULE_FOR", get("ALERT_RULE_FOR"), ""),
        "prometheus_scrape_interval": _duration("PROMETHEUS_SCRAPE_INTERVAL",
                                                get("PROMETHEUS_SCRAPE_INTERVAL"), ""),
        "prometheus_evaluation_interval": _duration("PROMETHEUS_EVALUATION_INTERVAL",
                                                    get("PROMETHEUS_EVALUATION_INTERVAL"), ""),
    }


def _project(raw: str) -> str:
    """Compose's own grammar for project names (it lowercases nothing for us)."""
    if raw and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,62}", raw):
        raise SettingsError(f"COMPOSE_PROJECT_NAME={shown(raw)}: expected lowercase letters, "
                            "digits, - and _, starting with a letter or digit")
    return raw


def _fleet(layered: Mapping[str, str]) -> dict[str, Any]:
    """The fleet's settings (vrm fleet, vrm agent); each bad value names its variable."""
    get = layered.get
    return {
        "fleet": _fleet_name(get("VRM_FLEET", "").strip()),
        "fleet_endpoints": _endpoints(get("VRM_FLEET_ENDPOINTS", "")),
        "fleet_host": _fleet_name(get("VRM_FLEET_HOST", "").strip(), "VRM_FLEET_HOST")
        or socket.gethostname(),
        "fleet_ttl": _int("VRM_FLEET_TTL", get("VRM_FLEET_TTL", "3"), low=1, high=3),
        "fleet_isolated_rollback_s": _int("VRM_FLEET_ISOLATED_ROLLBACK",
                                          get("VRM_FLEET_ISOLATED_ROLLBACK", "0"),
                                          low=0, high=86400),
        "fleet_confirm_timeout": _int("VRM_FLEET_CONFIRM_TIMEOUT",
                                      get("VRM_FLEET_CONFIRM_TIMEOUT", "10"), low=1,
                                      high=3600),
        "fleet_advertise": _advertise(get("VRM_FLEET_ADVERTISE", "").strip())
        or socket.gethostname(),
    }


def _fleet_name(raw: str, name: str = "VRM_FLEET") -> str:
    """A fleet or host name: it is part of etcd keys (`/vrm/<fleet>/hosts/<host>`)."""
    if raw and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", raw):
        raise SettingsError(f"{name}={shown(raw)}: expected letters, digits, '.', '-' and "
                            "'_' (at most 63), starting with a letter or digit")
    return raw


def _advertise(raw: str) -> str:
    """VRM_FLEET_ADVERTISE: a host name or IP address, written into other hosts' targets."""
    if raw and not re.fullmatch(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:]+\]", raw):
        raise SettingsError(f"VRM_FLEET_ADVERTISE={shown(raw)}: expected a host name or an "
                            "IP address (IPv6 in brackets) that other hosts reach this one at")
    return raw


def _endpoints(raw: str) -> tuple[str, ...]:
    """VRM_FLEET_ENDPOINTS: etcd client URLs, comma-separated (http://127.0.0.1:2379,...)."""
    found = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        match = re.fullmatch(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):([0-9]{1,5})/?",
                             item)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise SettingsError(f"VRM_FLEET_ENDPOINTS={shown(raw)}: {shown(item)} is not an "
                                "etcd client URL such as http://127.0.0.1:2379")
        found.append(item.rstrip("/"))
    return tuple(found)


def _split(layered: Mapping[str, str]) -> Split:
    rust_raw = layered.get("RUST_BACKEND_WEIGHT")
    ts_raw = layered.get("TS_BACKEND_WEIGHT")
    try:
        rust = parse_weight(rust_raw, "RUST_BACKEND_WEIGHT") if rust_raw is not None else None
        ts = parse_weight(ts_raw, "TS_BACKEND_WEIGHT") if ts_raw is not None else None
    except SplitError as exc:
        raise SettingsError(str(exc)) from None
    if rust is not None and ts is not None and rust + ts != 100:
        raise SettingsError(
            f"RUST_BACKEND_WEIGHT={rust_raw!r} and TS_BACKEND_WEIGHT={ts_raw!r} "
            f"add up to {rust + ts}, not 100"
        )
    if rust is None:
        rust = 10 if ts is None else 100 - ts
    return Split(rust)


def _check_ports(settings: Settings) -> None:
    seen: dict[int, str] = {}
    for name, port in settings.ports.items():
        if port in seen:
            raise SettingsError(f"{name}={port}: the same port as {seen[port]}")
        seen[port] = name


_KNOWN = {
    "RUST_BACKEND_WEIGHT",
    "TS_BACKEND_WEIGHT",
    "MAX_VRAM_GB",
    "BACKEND_PREFERENCE",
    "PROXY_PORT",
    "VISION_MANAGER_PORT",
    "TS_VISION_MANAGER_PORT",
    "GRAFANA_PASSWORD",
    "PROMETHEUS_PORT",
    "GRAFANA_PORT",
    "VRM_STATE_DIR",
    "VRM_RUNTIME",
    "RUST_BACKEND_URL",
    "TS_BACKEND_URL",
    "PROXY_RATE_LIMIT",
    "PROXY_BIND",
    "PROXY_STATUS_PORT",
    "PROXY_KEEPALIVE_TIMEOUT",
    "VRM_REHEARSAL_FAULTS",
    "REHEARSAL_RUST_ADMIN_PORT",
    "REHEARSAL_TS_ADMIN_PORT",
    "VRM_MONITORING",
    "NGINX_EXPORTER_PORT",
    "VRM_COMPOSE_PROFILE",
    "VRM_BASE_IMAGE",
    "VRM_BUILD_NETWORK",
    "VRM_NGINX_BIN",
    "PROXY_UPSTREAM_TIMEOUT",
    "PROXY_CANARY_TIMEOUT",
    "PROXY_RETRY_PROCESS",
    "VRM_LIVE_SPLIT",
    "COMPOSE_PROJECT_NAME",
    "PARITY_SAMPLE",
    "PARITY_PORT",
    "PARITY_MAX_RPS",
    "VRM_HEALTH_PATH",
    "VRM_REQUESTS",
    "VRM_KEYMAP",
    "VRM_MIGRATION_PLAN",
    "VRM_FLEET",
    "VRM_FLEET_ENDPOINTS",
    "VRM_FLEET_HOST",
    "VRM_FLEET_TTL",
    "VRM_FLEET_ISOLATED_ROLLBACK",
    "VRM_FLEET_CONFIRM_TIMEOUT",
    "VRM_FLEET_ADVERTISE",
    "ALERTMANAGER_PORT",
    "ALERTMANAGER_CLUSTER_PORT",
    "ALERTMANAGER_PEER_TIMEOUT",
    "ALERT_WEBHOOK_URLS",
    "ALERT_SLACK_WEBHOOK_URL",
    "ALERT_EMAIL_TO",
    "ALERT_SMTP_SMARTHOST",
    "ALERT_SMTP_FROM",
    "ALERT_SMTP_USERNAME",
    "ALERT_SMTP_PASSWORD",
    "ALERT_SMTP_REQUIRE_TLS",
    "ALERT_GROUP_WAIT",
    "ALERT_GROUP_INTERVAL",
    "ALERT_REPEAT_INTERVAL",
    "ALERT_RULE_FOR",
    "PROMETHEUS_SCRAPE_INTERVAL",
    "PROMETHEUS_EVALUATION_INTERVAL",
}
