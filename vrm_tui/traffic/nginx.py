"""nginx rendering: the main config from `nginx/nginx.conf`, the upstream block from a Split.

Each apply writes a complete generation directory (`nginx.conf` + `upstream.conf`), so the
pair that `nginx -t` checked is exactly the pair nginx loads; `current` is a symlink that is
swapped atomically.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from vrm_tui.core import address
from vrm_tui.core.errors import BadInput, NginxMissing, NginxTestFailed
from vrm_tui.core.paths import REPO_ROOT, StateDir
from vrm_tui.core.split import Split
from vrm_tui.system.files import point_link, write_atomic
from vrm_tui.traffic import mirror as mirror_mod

TEMPLATE = REPO_ROOT / "nginx" / "nginx.conf"
NGINX_INSTALL_HINT = "install it with: sudo apt-get install -y nginx"
KEEP_GENERATIONS = 10
RESERVE_BYTES = 256 * 1024


def nginx_binary(chosen: str | None = None) -> str:
    """Path of the nginx binary: `chosen` (the `VRM_NGINX_BIN` setting), else PATH, else
    /usr/sbin (Debian's place, often not on a user's PATH)."""
    if chosen:
        if not (os.path.isfile(chosen) and os.access(chosen, os.X_OK)):
            raise NginxMissing(f"VRM_NGINX_BIN={chosen} is not an executable nginx; "
                               f"unset it, or {NGINX_INSTALL_HINT}")
        return chosen
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise NginxMissing(f"nginx is not installed; {NGINX_INSTALL_HINT}")
    return found


def supports_live(template: Path) -> bool:
    """A template that lets requests pick their pool at run time (`{{ SPLIT_PICK }}`); an
    older deployment template keeps the reload path, so nothing is served stale."""
    try:
        return "SPLIT_PICK" in template.read_text()
    except OSError:
        return False


def template_for(deploy_dir: Path) -> Path:
    """The deployment's own `nginx/nginx.conf` when it has one, else vrm's."""
    own = deploy_dir / "nginx" / "nginx.conf"
    return own if own.is_file() else TEMPLATE


@dataclass(frozen=True)
class ProxyParams:
    """What the main config needs besides the split; runtimes fill it in."""

    listen: str
    status_listen: str
    pid_file: Path
    error_log: Path
    access_log: Path
    temp_dir: Path
    comparison_file: Path
    rate_limit: int
    rust_address: str
    ts_address: str
    worker_processes: int = 2
    daemon: bool = True
    status_allow: tuple[str, ...] = ("127.0.0.1", "::1")
    split_allow: tuple[str, ...] = ("127.0.0.1", "::1")  # who may even try POST /vrm/split
    client_keepalive_timeout: int = 0
    upstream_timeout: int = 30
    canary_ms: int | None = None  # a rust attempt's read timeout; None: the upstream timeout
    retry_process: bool = False  # POST /api/v1/vision/process is safe to retry elsewhere
    health_path: str = "/health"  # VRM_HEALTH_PATH: where the backends answer health checks
    template: Path = TEMPLATE
    worker_user: str | None = None
    mirror: mirror_mod.Mirror = field(default_factory=mirror_mod.Mirror)  # parity
    live: LiveSplit | None = None  # the Lua module's zero-reload split; None: reloads


@dataclass(frozen=True)
class LiveSplit:
    """Where the zero-reload split lives: the Lua module nginx loads, the split file vrm
    writes before each change (read by nginx at every start and reload), the Lua source."""

    modules: tuple[Path, ...]
    split_file: Path
    lua_dir: Path
    secret_file: Path | None = None  # the key /vrm/split changes are signed with (0600)


def ensure_dirs(params: ProxyParams) -> None:
    """Create the folders the config names; `nginx -t` fails without them."""
    for folder in (params.pid_file.parent, params.error_log.parent,
                   params.access_log.parent, params.temp_dir):
        folder.mkdir(parents=True, exist_ok=True)


# Characters that would end or change an unquoted nginx token: a path holding one is refused.
_UNSAFE = re.compile(r"[\s;{}'\"$#\\`\x00-\x1f\x7f]")


def _path(name: str, path: Path) -> str:
    """An absolute path nginx can read unquoted (settings refuse such a state dir earlier)."""
    text = str(path)
    if not path.is_absolute() or _UNSAFE.search(text):
        raise BadInput(f"{name}={text!r}: nginx needs an absolute path without whitespace, "
                       "quotes or any of ; { } $ # \\ `")
    return text


def _number(name: str, value: int, low: int, high: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadInput(f"{name}={value!r}: expected a whole number from {low} to {high}")
    return str(value)


def _network(value: str) -> str:
    """An address or a network (`172.30.0.0/24`) for `allow`, rebuilt by ipaddress."""
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise BadInput(f"status allow={value!r}: expected an IP address or network") from None
    return str(network.network_address) if network.num_addresses == 1 else str(network)


def _listen(name: str, value: str) -> str:
    """`host:port` rebuilt from its parts, so nothing else of `value` reaches the config."""
    return str(address.parse_hostport(name, value))


def render_main(params: ProxyParams) -> str:
    """Fill the `{{ NAME }}` placeholders of the main template.

    Every value is rebuilt from a parsed form or checked against what an nginx token may hold:
    a setting can never add a directive or a comment to the config."""
    rate = int(_number("PROXY_RATE_LIMIT", params.rate_limit, 0, 1_000_000))
    values = {
        "USER_DIRECTIVE": _user_directive(params.worker_user),
        "WORKER_PROCESSES": _number("worker_processes", params.worker_processes, 1, 1024),
        "PID_FILE": _path("pid file", params.pid_file),
        "ERROR_LOG": _path("error log", params.error_log),
        "ACCESS_LOG": _path("access log", params.access_log),
        "DAEMON": "on" if params.daemon else "off",
        "TEMP_DIR": _path("temp dir", params.temp_dir),
        "LISTEN": _listen("listen (PROXY_BIND:PROXY_PORT)", params.listen),
        "STATUS_LISTEN": _listen("status listen (PROXY_STATUS_PORT)", params.status_listen),
        "COMPARISON_FILE": _path("comparison file", params.comparison_file),
        "CLIENT_KEEPALIVE_TIMEOUT": _number("PROXY_KEEPALIVE_TIMEOUT",
                                            params.client_keepalive_timeout, 0, 3600),
        "UPSTREAM_TIMEOUT": _number("PROXY_UPSTREAM_TIMEOUT", params.upstream_timeout, 1,
                                    3600),
        "PROCESS_RETRY": " non_idempotent" if params.retry_process else "",
        "HEALTH_PATH": params.health_path,
        "LIMIT_REQ_ZONE": (
            f"limit_req_zone $binary_remote_addr zone=vrm_api:10m rate={rate}r/s;"
            if rate > 0
            else "# PROXY_RATE_LIMIT=0: rate limiting is off"
        ),
        "LIMIT_REQ": f"limit_req zone=vrm_api burst={2 * rate} nodelay;" if rate > 0 else "",
        "STATUS_ALLOW": " ".join(f"allow {_network(a)};" for a in params.status_allow),
        "PARITY_HTTP": mirror_mod.render_http(params.mirror),
        "PARITY_MIRROR": mirror_mod.render_mirror(params.mirror),
        "PARITY_LOCATION": mirror_mod.render_location(params.mirror),
        **_split_placeholders(params.live, params.split_allow),
    }
    template = params.template
    text = template.read_text()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{template}: unknown placeholder {{{{ {name} }}}}")
        return values[name]

    return re.sub(r"\{\{\s*([A-Z_]+)\s*\}\}", fill, text)


def _split_placeholders(live: LiveSplit | None,
                        split_allow: tuple[str, ...] = ("127.0.0.1", "::1")) -> dict[str, str]:
    """How a request picks its pool and how nginx answers for its split, per mode."""
    if live is None:
        return {
            "LOAD_MODULES": "# no Lua module: each weight change is a reload",
            "SPLIT_PICK": "",
            "SPLIT_LOCATIONS": (
                "location = /vrm/served {\n"
                "            default_type application/json;\n"
                "            return 200 $vrm_served;\n"
                "        }"),
        }
    allow = " ".join(f"allow {_network(a)};" for a in split_allow)
    return {
        "LOAD_MODULES": "\n".join(f"load_module {_path('Lua module', m)};"
                                  for m in live.modules),
        "SPLIT_PICK": (
            "set_by_lua_block $vrm_pool { return require(\"vrm_split\").pick() }\n"
            "        set_by_lua_block $vrm_generation "
            "{ return require(\"vrm_split\").generation() }"),
        "SPLIT_LOCATIONS": (
            "location = /vrm/served {\n"
            "            content_by_lua_block { require(\"vrm_split\").served() }\n"
            "        }\n"
            "        location = /vrm/split {\n"
            f"            {allow} deny all;\n"
            "            client_max_body_size 1k;\n"
            "            client_body_buffer_size 1k;\n"
            "            content_by_lua_block { require(\"vrm_split\").set() }\n"
            "        }"),
    }


WORKER_USER = "nobody"


def _user_directive(user: str | None) -> str:
    if os.geteuid() != 0:
        return "# not root: workers run as the current user"
    if user is None:
        return "user root root;  # a folder above the state dir keeps nobody out"
    return f"user {user} {worker_group(user)};"


def worker_group(user: str) -> str:
    """The primary group of the workers' user (`nogroup` on Debian, `nobody` elsewhere)."""
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def state_token(state_dir: Path) -> str:
    """A token naming one state dir, rendered into `/vrm/served`: an nginx that answers
    without it is some other deployment's, never ours."""
    return hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:16]


def unreachable_for(user: str, state_dir: Path) -> Path | None:
    """The first folder above `state_dir` that `user` cannot traverse (None: all can be).

    Workers open the temp dir, the comparison file and (after a log rotation) the logs by
    path, so they must reach the state dir; the state dir itself is opened to their group
    by `secure_state_dir`."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return Path("/")
    for folder in reversed(state_dir.resolve().parents):
        try:
            info = folder.stat()
        except OSError:
            return folder
        if info.st_uid == entry.pw_uid:
            ok = info.st_mode & 0o100
        elif info.st_gid == entry.pw_gid:
            ok = info.st_mode & 0o010
        else:
            ok = info.st_mode & 0o001
        if not ok:
            return folder
    return None


def secure_state_dir(state_dir: Path, worker_user: str | None) -> None:
    """The state dir is private: 0700, or 0710 with the workers' group when nginx workers
    run as another user (they may traverse it, never list or read what vrm keeps there).
    A folder holding anything vrm does not keep there was not created by vrm: left as is."""
    if not StateDir(state_dir).holds_only_vrms():
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        if worker_user is not None and os.geteuid() == 0:
            os.chown(state_dir, -1, pwd.getpwnam(worker_user).pw_gid)
            os.chmod(state_dir, 0o710)
        else:
            os.chmod(state_dir, 0o700)
    except (OSError, KeyError):
        pass  # not ours to change (a shared dir set up by an admin): leave it as it is


def render_upstream(split: Split, generation: int, rust_address: str, ts_address: str,
                    token: str = "", live: LiveSplit | None = None,
                    upstream_ms: int = 30_000, canary_ms: int | None = None) -> str:
    """The upstream pools for a split, with DESIGN's rules for 0 and 100.

    Without the Lua module: one weighted upstream; nginx rejects `weight=0`, so rust 0 is
    written `down`, and at rust 100 typescript stays as a `backup`, used only when rust
    cannot answer (the seed's fallback). With it (`live`): three pools a request picks from
    at run time by the split in shared memory (rust first with typescript as the fallback,
    typescript first with rust as the fallback, typescript only), so the same rules hold
    without a reload. Addresses are parsed and rebuilt from host and port, so a value cannot
    add parameters, comments or blocks.
    """
    rust_address = str(address.parse_hostport("rust upstream address", rust_address))
    ts_address = str(address.parse_hostport("typescript upstream address", ts_address))
    _number("generation", generation, 0, 10**12)
    if not re.fullmatch(r"[0-9a-f]*", token):
        raise BadInput(f"state token {token!r}: expected hex digits")
    header = (f"# Generated by vrm: generation {generation}, {split}. Do not edit; use vrm "
              "deploy.\n")
    direct = (
        "upstream vision_rust {\n"
        f"    server {rust_address};\n"
        f"{_counted('rust') if live else ''}"
        "    keepalive 16;\n"
        "}\n"
        "upstream vision_typescript {\n"
        f"    server {ts_address};\n"
        f"{_counted('typescript') if live else ''}"
        "    keepalive 16;\n"
        "}\n"
    )
    # typescript, the fallback, is taken out for 5 s after 3 failures (nginx's passive
    # check). rust, the canary, never is: each of its failures is retried on typescript
    # anyway (users do not see it), and taking it out would hide from the gates the very
    # failures they must see to roll back within seconds.
    health = "max_fails=3 fail_timeout=5s"
    never_out = "max_fails=0"
    if live is not None:
        secret_line = ("" if live.secret_file is None else
                       f'        secret_file = "{_path("secret file", live.secret_file)}",\n')
        peers = _canary_peers(rust_address, ts_address)
        _number("upstream timeout (ms)", upstream_ms, 1, 3_600_000)
        canary = upstream_ms if canary_ms is None else canary_ms
        _number("canary timeout (ms)", canary, 100, upstream_ms)
        timeouts = f"        upstream_ms = {upstream_ms}, canary_ms = {canary},\n"
        if peers:
            secret_line += timeouts + f"        canary = {peers},\n"
            rust_first = (
                # The servers are placeholders for nginx: the balancer picks the attempt's
                # peer and its timeouts (rust with the canary's, then typescript).
                "upstream vrm_rust_first {\n"
                f"    server {rust_address} {never_out};\n"
                "    balancer_by_lua_block { require(\"vrm_split\").balance() }\n"
                "    keepalive 64;\n"
                "}\n")
        else:
            secret_line += timeouts
            rust_first = (
                "upstream vrm_rust_first {\n"
                f"    server {rust_address} {never_out};\n"
                f"    server {ts_address} backup;\n"
                f"{_counted('rust', 'typescript')}"
                "    keepalive 64;\n"
                "}\n")
        return header + (
            f'lua_package_path "{_path("Lua dir", live.lua_dir)}/?.lua;;";\n'
            "lua_shared_dict vrm 1m;\n"
            "init_by_lua_block {\n"
            '    require("vrm_split").init{\n'
            f'        file = "{_path("split file", live.split_file)}",\n'
            f"        generation = {generation}, rust = {split.rust},\n"
            f'        token = "{token}", in_flight = true,\n'
            f"{secret_line}"
            "    }\n"
            "}\n"
            'init_worker_by_lua_block { require("vrm_split").worker_start() }\n'
            'log_by_lua_block { require("vrm_split").done() }\n'
            f"{rust_first}"
            "upstream vrm_typescript_first {\n"
            f"    server {ts_address} {health};\n"
            f"    server {rust_address} backup;\n"
            f"{_counted('typescript', 'rust')}"
            "    keepalive 64;\n"
            "}\n"
            "upstream vrm_typescript_only {\n"
            f"    server {ts_address} {health};\n"
            f"{_counted('typescript')}"
            "    keepalive 64;\n"
            "}\n"
        ) + direct + backend_name_map(rust_address, ts_address)
    if split.rust == 0:
        rust_line = f"server {rust_address} down;"
        ts_line = f"server {ts_address} weight=100 {health};"
    elif split.rust == 100:
        rust_line = f"server {rust_address} weight=100 {never_out};"
        ts_line = f"server {ts_address} backup;"
    else:
        rust_line = f"server {rust_address} weight={split.rust} {never_out};"
        ts_line = f"server {ts_address} weight={split.typescript} {health};"
    served = json.dumps(
        {"generation": generation, "rust": split.rust, "typescript": split.typescript,
         "token": token}
    )[:-1] + ',"worker_pid":$pid}\\n'
    return header + (
        "upstream vision_backend {\n"
        f"    {rust_line}\n"
        f"    {ts_line}\n"
        "    keepalive 64;\n"
        "}\n"
    ) + direct + backend_name_map(rust_address, ts_address) + (
        'map $host $vrm_pool { default "vision_backend"; }\n'
        f'map $host $vrm_generation {{ default "{generation}"; }}\n'
        f"map $host $vrm_served {{ default '{served}'; }}\n"
    )


def _counted(*order: str) -> str:
    """balancer_by_lua of a pool nginx balances itself (with the Lua module): each attempt
    counts as in flight on the backend of the pool's server it goes to, `order` being the
    pool's servers (/vrm/served's `in_flight`). Before `keepalive`, which wraps the
    balancer it finds; it picks no peer, so nginx's round robin still does."""
    names = ", ".join(f'"{backend}"' for backend in order)
    return f'    balancer_by_lua_block {{ require("vrm_split").attempt({names}) }}\n'


def _canary_peers(rust_address: str, ts_address: str) -> str:
    """The Lua table of both peers when they are IPv4 literals (the balancer cannot resolve
    names; nginx itself resolves a name only when it loads the config), else ''."""
    found = []
    for name, hostport in (("rust", rust_address), ("typescript", ts_address)):
        host, _, port = hostport.rpartition(":")
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return ""
        found.append(f'{name} = {{"{host}", {int(port)}}}')
    return "{ " + ", ".join(found) + " }"


_UPSTREAM_SERVER = r"upstream {name} \{{\n\s+server (\S+);"


@dataclass(frozen=True)
class UpstreamShape:
    """What a rendered upstream.conf was rendered from, besides its split: a rollback
    re-renders it from these, never from settings that changed since."""

    rust_address: str
    ts_address: str
    live: bool
    upstream_ms: int = 30_000
    canary_ms: int | None = None


def upstream_shape(text: str) -> UpstreamShape:
    found = [re.search(_UPSTREAM_SERVER.format(name=name), text)
             for name in ("vision_rust", "vision_typescript")]
    if found[0] is None or found[1] is None:
        raise ValueError("no vision_rust / vision_typescript upstream in it")
    timeouts = re.search(r"upstream_ms = (\d+), canary_ms = (\d+)", text)
    if timeouts is None:
        return UpstreamShape(found[0].group(1), found[1].group(1),
                             "init_by_lua_block" in text)
    return UpstreamShape(found[0].group(1), found[1].group(1), "init_by_lua_block" in text,
                         int(timeouts.group(1)), int(timeouts.group(2)))


def backend_name_map(rust_address: str, ts_address: str) -> str:
    """`$vrm_backend_name`: the backend that gave the answer, from `$upstream_addr`.

    nginx stamps it as `X-VRM-Backend` and logs it, so every response is attributed without
    the backend's help. A retried request's `$upstream_addr` is "a, b": the LAST address
    answered. `$upstream_addr` holds resolved IPs, so a host name (compose service, DNS)
    is matched by its port when the two ports differ; with equal ports and host names the
    proxy cannot tell them apart and names neither (the access log still has the address).
    """
    entries = []
    ports = {a.rsplit(":", 1)[-1] for a in (rust_address, ts_address)}
    for hostport, name in ((rust_address, "rust"), (ts_address, "typescript")):
        host, _, port = hostport.rpartition(":")
        if _is_ip(host.strip("[]")):
            pattern = re.escape(hostport)
        elif len(ports) == 2:
            pattern = r"[^,]*:" + re.escape(port)
        else:
            continue
        entries.append(f'    "~(^|, ){pattern}$" {name};\n')
    return ("map $upstream_addr $vrm_backend_name {\n"
            '    default "";\n' + "".join(entries) + "}\n")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_SERVED_RE = re.compile(r"^# Generated by vrm: generation (\d+), rust (\d+)%")


@dataclass(frozen=True)
class Generation:
    """One rendered generation directory."""

    number: int
    path: Path

    @property
    def main(self) -> Path:
        return self.path / "nginx.conf"

    @property
    def upstream(self) -> Path:
        return self.path / "upstream.conf"

    def split(self) -> Split | None:
        """The split written in this generation's upstream file (None if unreadable)."""
        try:
            first = self.upstream.read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        match = _SERVED_RE.match(first)
        return Split(int(match.group(2))) if match else None


class ConfigStore:
    """Generation directories under `<state>/nginx/` and the `current` symlink nginx runs from."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.current_link = root / "current"
        self.good_link = root / "good"

    @property
    def main_config(self) -> Path:
        """The path nginx is started with; it resolves through `current`."""
        return self.current_link / "nginx.conf"

    def generations(self) -> list[Generation]:
        found = []
        if self.root.is_dir():
            for entry in self.root.iterdir():
                match = re.fullmatch(r"gen-(\d+)", entry.name)
                if match and entry.is_dir():
                    found.append(Generation(int(match.group(1)), entry))
        return sorted(found, key=lambda g: g.number)

    def current(self) -> Generation | None:
        return self._link(self.current_link)

    def good(self) -> Generation | None:
        """The last generation verified serving (what a restart may safely load)."""
        return self._link(self.good_link)

    def _link(self, link: Path) -> Generation | None:
        try:
            target = os.readlink(link)
        except OSError:
            return None
        match = re.fullmatch(r"gen-(\d+)", Path(target).name)
        return Generation(int(match.group(1)), self.root / Path(target).name) if match else None

    def write(self, number: int, main: str, upstream: str) -> Generation:
        """Write a complete candidate generation (fsynced) without making it current.

        Written into a hidden folder and renamed: a full disk or a kill leaves no partial
        `gen-N`, only a `.gen-N.tmp-PID` that the next write of that number removes."""
        gen = Generation(number, self.root / f"gen-{number:06d}")
        tmp = self.root / f".{gen.path.name}.tmp-{os.getpid()}"
        for stale in (tmp, gen.path):
            if stale.exists():
                shutil.rmtree(stale)
        try:
            tmp.mkdir(parents=True)
            for name, text in (("nginx.conf", main), ("upstream.conf", upstream)):
                with open(tmp / name, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
            os.rename(tmp, gen.path)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return gen

    @property
    def reserve(self) -> Path:
        return self.root / ".reserve"

    def keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk so a rollback can write its generation on a full
        disk (it releases the reserve first). Best effort."""
        if self.reserve.exists():
            return
        with contextlib.suppress(OSError):  # write_atomic leaves no temporary file behind
            write_atomic(self.reserve, "\0" * RESERVE_BYTES)

    def release_reserve(self) -> bool:
        try:
            self.reserve.unlink()
        except OSError:
            return False
        return True

    def activate(self, gen: Generation) -> None:
        """Point `current` at `gen` with one atomic rename."""
        self._point(self.current_link, gen)

    def mark_good(self, gen: Generation) -> None:
        """Remember `gen` as verified serving."""
        self._point(self.good_link, gen)

    def _point(self, link: Path, gen: Generation) -> None:
        point_link(link, gen.path.name)

    def prune(self, keep: int = KEEP_GENERATIONS) -> None:
        """Drop old generations, never the current or the last good one."""
        kept = {g.number for g in (self.current(), self.good()) if g is not None}
        for gen in self.generations()[:-keep]:
            if gen.number not in kept:
                shutil.rmtree(gen.path, ignore_errors=True)


def test_config(config: Path, error_log: Path | None = None, timeout: float = 10.0,
                binary: str | None = None) -> None:
    """Run `nginx -t` on a complete config; raise NginxTestFailed with nginx's error."""
    early_log = ["-e", str(error_log)] if error_log else []
    proc = subprocess.run(
        [nginx_binary(binary), "-t", "-q", *early_log, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "test failed" not in ln]
        raise NginxTestFailed("; ".join(lines).strip() or f"nginx -t exited {proc.returncode}")
