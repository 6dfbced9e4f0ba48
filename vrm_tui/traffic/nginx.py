"""nginx rendering: the main config from `nginx/nginx.conf`, the upstream block from a Split.

Each apply writes a complete generation directory (`nginx.conf` + `upstream.conf`), so the
pair that `nginx -t` checked is exactly the pair nginx loads; `current` is a symlink that is
swapped atomically.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vrm_tui.core.errors import Failure
from vrm_tui.core.split import Split

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "nginx" / "nginx.conf"
NGINX_INSTALL_HINT = "install it with: sudo apt-get install -y nginx"
KEEP_GENERATIONS = 10


class NginxMissing(Failure):
    """No nginx binary; the message says how to install one."""


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
    client_keepalive_timeout: int = 0
    upstream_timeout: int = 30
    retry_process: bool = False  # POST /api/v1/vision/process is safe to retry elsewhere
    health_path: str = "/health"  # VRM_HEALTH_PATH: where the backends answer health checks
    template: Path = TEMPLATE


def ensure_dirs(params: ProxyParams) -> None:
    """Create the folders the config names; `nginx -t` fails without them."""
    for folder in (params.pid_file.parent, params.error_log.parent,
                   params.access_log.parent, params.temp_dir):
        folder.mkdir(parents=True, exist_ok=True)


def render_main(params: ProxyParams) -> str:
    """Fill the `{{ NAME }}` placeholders of the main template."""
    rate = params.rate_limit
    values = {
        "USER_DIRECTIVE": _user_directive(),
        "WORKER_PROCESSES": str(params.worker_processes),
        "PID_FILE": str(params.pid_file),
        "ERROR_LOG": str(params.error_log),
        "ACCESS_LOG": str(params.access_log),
        "DAEMON": "on" if params.daemon else "off",
        "TEMP_DIR": str(params.temp_dir),
        "LISTEN": params.listen,
        "STATUS_LISTEN": params.status_listen,
        "COMPARISON_FILE": str(params.comparison_file),
        "CLIENT_KEEPALIVE_TIMEOUT": str(params.client_keepalive_timeout),
        "UPSTREAM_TIMEOUT": str(params.upstream_timeout),
        "PROCESS_RETRY": " non_idempotent" if params.retry_process else "",
        "HEALTH_PATH": params.health_path,
        "LIMIT_REQ_ZONE": (
            f"limit_req_zone $binary_remote_addr zone=vrm_api:10m rate={rate}r/s;"
            if rate > 0
            else "# PROXY_RATE_LIMIT=0: rate limiting is off"
        ),
        "LIMIT_REQ": f"limit_req zone=vrm_api burst={2 * rate} nodelay;" if rate > 0 else "",
        "STATUS_ALLOW": " ".join(f"allow {a};" for a in params.status_allow),
    }
    template = params.template
    text = template.read_text()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise KeyError(f"{template}: unknown placeholder {{{{ {name} }}}}")
        return values[name]

    return re.sub(r"\{\{\s*([A-Z_]+)\s*\}\}", fill, text)


def _user_directive() -> str:
    # Workers of a root master drop to `nobody`, which cannot read a private state dir.
    if os.geteuid() != 0:
        return "# not root: workers run as the current user"
    return "user root root;"


def render_upstream(split: Split, generation: int, rust_address: str, ts_address: str) -> str:
    """The upstream blocks for a split, with DESIGN's rules for 0 and 100.

    nginx rejects `weight=0`, so rust 0 is written `down`; at rust 100 typescript stays as a
    `backup`, used only when rust cannot answer (the seed's fallback).
    """
    if split.rust == 0:
        rust_line = f"server {rust_address} down;"
        ts_line = f"server {ts_address} weight=100 max_fails=3 fail_timeout=5s;"
    elif split.rust == 100:
        rust_line = f"server {rust_address} weight=100 max_fails=3 fail_timeout=5s;"
        ts_line = f"server {ts_address} backup;"
    else:
        rust_line = f"server {rust_address} weight={split.rust} max_fails=3 fail_timeout=5s;"
        ts_line = f"server {ts_address} weight={split.typescript} max_fails=3 fail_timeout=5s;"
    served = json.dumps(
        {"generation": generation, "rust": split.rust, "typescript": split.typescript}
    )[:-1] + ',"worker_pid":$pid}\\n'
    return (
        f"# Generated by vrm: generation {generation}, {split}. Do not edit; use vrm deploy.\n"
        "upstream vision_backend {\n"
        f"    {rust_line}\n"
        f"    {ts_line}\n"
        "    keepalive 64;\n"
        "}\n"
        "upstream vision_rust {\n"
        f"    server {rust_address};\n"
        "    keepalive 16;\n"
        "}\n"
        "upstream vision_typescript {\n"
        f"    server {ts_address};\n"
        "    keepalive 16;\n"
        "}\n"
        + backend_name_map(rust_address, ts_address)
        + f'map $host $vrm_generation {{ default "{generation}"; }}\n'
        f"map $host $vrm_served {{ default '{served}'; }}\n"
    )


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
    for address, name in ((rust_address, "rust"), (ts_address, "typescript")):
        host, _, port = address.rpartition(":")
        if _is_ip(host.strip("[]")):
            pattern = re.escape(address)
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
        try:
            target = os.readlink(self.current_link)
        except OSError:
            return None
        match = re.fullmatch(r"gen-(\d+)", Path(target).name)
        return Generation(int(match.group(1)), self.root / Path(target).name) if match else None

    def write(self, number: int, main: str, upstream: str) -> Generation:
        """Write a complete candidate generation (fsynced) without making it current."""
        gen = Generation(number, self.root / f"gen-{number:06d}")
        if gen.path.exists():
            shutil.rmtree(gen.path)
        gen.path.mkdir(parents=True)
        for path, text in ((gen.main, main), (gen.upstream, upstream)):
            with open(path, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        return gen

    def activate(self, gen: Generation) -> None:
        """Point `current` at `gen` with one atomic rename."""
        tmp = self.root / f".current-{os.getpid()}"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(gen.path.name, tmp)
        os.replace(tmp, self.current_link)
        dir_fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def prune(self, keep: int = KEEP_GENERATIONS) -> None:
        """Drop old generations, never the current one."""
        current = self.current()
        for gen in self.generations()[:-keep]:
            if current is None or gen.number != current.number:
                shutil.rmtree(gen.path, ignore_errors=True)


class NginxTestFailed(Failure):
    """`nginx -t` rejected a candidate; the message is nginx's own."""


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
