"""The compose runtime: the seed's docker compose stack, driven like the local one.

Up and down go through `docker compose` (or `docker-compose` v1 where that is what the host
has); status, logs, reload and the proxy's worker pids through the docker SDK. The state
dir is mounted at the same path in the proxy container, so vrm renders nginx's config and
reads its access log exactly as with local processes, and `nginx -t` runs inside the
container, where the backends' service names resolve.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from vrm_tui.core import services
from vrm_tui.core.errors import StackError
from vrm_tui.core.split import Split
from vrm_tui.settings import Settings
from vrm_tui.stack.runtime import ServiceState
from vrm_tui.system import logfiles
from vrm_tui.system.procs import children, port_in_use, reload_settled
from vrm_tui.traffic import live, nginx
from vrm_tui.traffic.served import Served, read_served

COMPOSE_DIR = nginx.REPO_ROOT / "docker"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
STATUS_PORT = 3010  # the proxy container's status listener, published on 127.0.0.1 only
PORTS = {services.RUST: 3001, services.TYPESCRIPT: 3002}
INSTALL_HINT = "sudo apt-get install -y docker.io docker-compose"
OVERRIDE = "docker-compose.override.yml"


def subnet(project: str) -> ipaddress.IPv4Network:
    """The project's own /24 in 172.30.0.0/16 (docker-compose.yml's network; the exporter
    scrapes from it): picked by a hash of the project name so that stacks beside each other
    do not ask docker for the same subnet."""
    third = hashlib.sha256(project.encode()).digest()[0]
    return ipaddress.IPv4Network(f"172.30.{third}.0/24")


def compose_command() -> list[str]:
    """`docker compose` (v2) when the docker CLI has it, else `docker-compose` (v1)."""
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                               check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    raise StackError(f"neither `docker compose` nor `docker-compose` is installed; "
                     f"{INSTALL_HINT}")


def override_file(settings: Settings) -> Path | None:
    """The deployment's `docker-compose.override.yml` next to its `.env` (the seed's place
    for local changes), if there is one.

    `docker compose` reads an override by itself only when no `-f` is given; vrm passes its
    files with `-f`, so it adds this one last. Relative paths inside it resolve against
    vrm's compose folder (the project directory is the first file's), so use absolute ones.
    """
    path = settings.deploy_dir / OVERRIDE
    return path if path.is_file() else None


class ComposeRuntime:
    """Runs the stack as compose services in the deployment's own project (the seed's
    service names; containers found by compose's project and service labels)."""

    name = "compose"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_dir = settings.state_dir / "logs"
        self.project = settings.compose_project
        self.subnet = subnet(self.project)

    # --- docker access -------------------------------------------------------------------

    @cached_property
    def client(self) -> Any:
        import docker

        try:
            client = docker.from_env(timeout=10)
            client.ping()
        except Exception as exc:
            raise StackError(f"no Docker engine answers ({exc}); start dockerd, or "
                             f"{INSTALL_HINT}") from None
        return client

    def _container(self, service: str) -> Any | None:
        """This project's container of `service` (the newest, should compose have left two)."""
        found = self.client.containers.list(all=True, filters={"label": [
            f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]})
        return max(found, key=lambda c: c.attrs.get("Created", "")) if found else None

    def files(self) -> list[Path]:
        """vrm's compose files, then the deployment's override (applied last, so it wins)."""
        overlay = ("docker-compose.rehearsal.yml" if self.settings.compose_profile == "rehearsal"
                   else "docker-compose.gpu.yml")
        override = override_file(self.settings)
        return [COMPOSE_DIR / "docker-compose.yml", COMPOSE_DIR / overlay,
                *([override] if override else [])]

    def environment(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update({
            "VRM_STATE_DIR": str(s.state_dir), "PROXY_PORT": str(s.proxy_port),
            "PROXY_STATUS_PORT": str(s.proxy_status_port),
            "NGINX_EXPORTER_PORT": str(s.nginx_exporter_port),
            "PROXY_BIND": s.proxy_bind, "VISION_MANAGER_PORT": str(s.rust_port),
            "TS_VISION_MANAGER_PORT": str(s.ts_port), "PROMETHEUS_PORT": str(s.prometheus_port),
            "GRAFANA_PORT": str(s.grafana_port), "GRAFANA_PASSWORD": s.grafana_password,
            "MAX_VRAM_GB": str(s.max_vram_gb), "BASE_IMAGE": s.base_image,
            "VRM_BUILD_NETWORK": s.build_network, "VRM_SUBNET": str(self.subnet),
            "VRM_GATEWAY": str(self.subnet.network_address + 1),
            "VRM_IMAGE_TAG": self.image_tag,
        })
        return env

    @cached_property
    def image_tag(self) -> str:
        """A tag naming what vrm's images are built from (the base image, the Dockerfiles,
        the rehearsal backend's code and profiles): a changed input gets a fresh image on the
        next `vrm up` instead of a stale one that happens to have the old name."""
        digest = hashlib.sha256(self.settings.base_image.encode())
        root = COMPOSE_DIR.parent
        sources = sorted([*COMPOSE_DIR.glob("Dockerfile*"),
                          *(root / "vrm_tui" / "rehearsal").glob("*.py"),
                          *(root / "vrm_tui" / "core").glob("*.py"),
                          *(root / "configs" / "rehearsal").glob("*.yaml")])
        for path in sources:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        return digest.hexdigest()[:12]

    def run_compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a compose command for this stack; the caller reads its exit status."""
        command = [*compose_command(), "-p", self.project]
        for path in self.files():
            command += ["-f", str(path)]
        try:
            return subprocess.run([*command, *args], capture_output=True, text=True,
                                  timeout=timeout, env=self.environment(), check=False)
        except subprocess.TimeoutExpired:
            raise StackError(f"docker compose {' '.join(args)} took over {timeout:.0f}s") \
                from None

    def compose(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run a compose command; a failure is a StackError with the end of its output."""
        proc = self.run_compose(*args, timeout=timeout)
        if proc.returncode != 0:
            tail = "\n  ".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise StackError(f"docker compose {' '.join(args)} failed:\n  {tail}")
        return proc

    # --- layout --------------------------------------------------------------------------

    def proxy_params(self) -> nginx.ProxyParams:
        s = self.settings
        return nginx.ProxyParams(
            listen="0.0.0.0:3000",
            status_listen=f"0.0.0.0:{STATUS_PORT}",
            pid_file=s.state_dir / "run" / "nginx.pid",
            error_log=self.proxy_error_log(),
            access_log=self.access_log(),
            temp_dir=s.state_dir / "nginx" / "tmp",
            comparison_file=s.state_dir / "performance-comparison.json",
            rate_limit=s.proxy_rate_limit,
            rust_address=f"{services.RUST}:{PORTS[services.RUST]}",
            ts_address=f"{services.TYPESCRIPT}:{PORTS[services.TYPESCRIPT]}",
            daemon=False,
            # The subnet for the exporter's /nginx_status scrape; a split change only from
            # the host (through the published port, seen as the network's gateway).
            status_allow=("127.0.0.1", "::1", str(self.subnet)),
            split_allow=("127.0.0.1", "::1", str(self.subnet.network_address + 1)),
            client_keepalive_timeout=s.proxy_keepalive_timeout,
            upstream_timeout=s.proxy_upstream_timeout,
            canary_ms=None if s.proxy_canary_timeout is None else s.proxy_canary_timeout * 1000,
            retry_process=s.retry_process,
            health_path=s.health_path,
            template=nginx.template_for(s.deploy_dir),
            live=self._live(),
        )

    def _live(self) -> nginx.LiveSplit | None:
        """The proxy image installs Debian's Lua module (docker/Dockerfile.proxy)."""
        if not self.settings.live_split:
            return None
        return live.live_split(self.settings.paths.nginx) \
            if nginx.supports_live(nginx.template_for(self.settings.deploy_dir)) else None

    def proxy_error_log(self) -> Path:
        return self.log_dir / "proxy-error.log"

    def access_log(self) -> Path:
        return self.log_dir / "proxy-access.log"

    # --- lifecycle -----------------------------------------------------------------------

    def _running(self) -> set[str]:
        found = set()
        for container in self.client.containers.list(
                filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            found.add(container.labels.get(SERVICE_LABEL, container.name))
        return found

    def _wanted(self) -> list[str]:
        names = list(services.CORE)
        if self.settings.monitoring:
            names += [services.NGINX_EXPORTER, services.PROMETHEUS]
        return names

    def start_dependencies(self) -> list[str]:
        """The backends, so the proxy's first config can be tested where their names resolve."""
        before = self._running()
        backends = [services.RUST, services.TYPESCRIPT]
        if set(backends) <= before:
            return []  # a compose call costs a second; `vrm deploy` on a running stack skips it
        for name, port in ((services.RUST, self.settings.rust_port),
                           (services.TYPESCRIPT, self.settings.ts_port)):
            setting = "VISION_MANAGER_PORT" if name == services.RUST else "TS_VISION_MANAGER_PORT"
            if name not in before and port_in_use("127.0.0.1", port):
                raise StackError(f"{setting} {port} is already in use on 127.0.0.1; stop what "
                                 f"listens there or set {setting} in .env")
        self.compose("up", "-d", *backends)
        return [name for name in backends if name not in before]

    def up(self) -> list[str]:
        for folder in (self.log_dir, self.settings.state_dir / "run"):
            folder.mkdir(parents=True, exist_ok=True)
        before = self._running()
        if services.PROXY not in before and port_in_use(self.settings.proxy_bind,
                                                        self.settings.proxy_port):
            raise StackError(f"PROXY_PORT {self.settings.proxy_port} is already in use on "
                             f"{self.settings.proxy_bind}: stop what listens there or set "
                             "PROXY_PORT in .env")
        missing = [name for name in self._wanted() if name not in before]
        if missing:
            self.compose("up", "-d", *self._wanted())
        return missing

    def down(self) -> list[str]:
        before = self._running()
        if before:
            self.compose("down", "--remove-orphans")
        return [name for name in services.MANAGED if name in before]

    def stop_service(self, service: str) -> bool:
        container = self._container(service)
        if container is None or container.status != "running":
            return False
        self.compose("stop", service)
        return True

    # --- reading -------------------------------------------------------------------------

    def services(self) -> list[ServiceState]:
        found = []
        ports = {services.PROXY: self.settings.proxy_port, services.RUST: self.settings.rust_port,
                 services.TYPESCRIPT: self.settings.ts_port,
                 services.PROMETHEUS: self.settings.prometheus_port,
                 services.NGINX_EXPORTER: self.settings.nginx_exporter_port}
        for name in self._wanted():
            container = self._container(name)
            if container is None:
                found.append(ServiceState(name, "stopped"))
                continue
            state = container.attrs.get("State", {})
            health = (state.get("Health") or {}).get("Status", "")
            url = f"http://127.0.0.1:{ports[name]}" if name in ports else None
            status = "running" if container.status == "running" else container.status
            detail = f"container {container.short_id}" + (f", docker health {health}"
                                                          if health else "")
            found.append(ServiceState(name, status, state.get("Pid") or None, url, detail))
        return found

    def backend_pid(self, service: str) -> int | None:
        container = self._container(service)
        return (container.attrs.get("State", {}).get("Pid") or None) if container else None

    def admin_url(self, service: str) -> str | None:
        return None  # the rehearsal fault endpoint stays on the container's loopback

    def log_lines(self, service: str, tail: int = 100, follow: bool = False,
                  keep_going: Callable[[], bool] = lambda: True) -> Iterator[str]:
        if service not in services.MANAGED and service != services.GRAFANA:
            raise StackError(f"unknown service {service!r}; the compose stack runs "
                             f"{', '.join(self._wanted())}")
        if service == services.PROXY:  # nginx logs to files in the shared state dir
            paths = [self.proxy_error_log(), self.access_log()]
            return (logfiles.follow(paths, tail, keep_going) if follow
                    else logfiles.tail_once(paths, tail))
        container = self._container(service)
        if container is None:
            raise StackError(f"{service} has no container; start the stack with `vrm up`")
        return self._container_logs(container, tail, follow, keep_going)

    @staticmethod
    def _container_logs(container: Any, tail: int, follow: bool,
                        keep_going: Callable[[], bool]) -> Iterator[str]:
        if not follow:
            yield from container.logs(tail=tail).decode(errors="replace").splitlines()
            return
        pending = b""
        for chunk in container.logs(tail=tail, stream=True, follow=True):
            if not keep_going():
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                yield line.decode(errors="replace")

    # --- proxy control -------------------------------------------------------------------

    def proxy_running(self) -> bool:
        container = self._container(services.PROXY)
        return container is not None and container.status == "running"

    def served(self, timeout: float = 1.0) -> Served:
        return read_served("127.0.0.1", self.settings.proxy_status_port, timeout=timeout)

    def set_live_split(self, generation: int, split: Split, timeout: float = 1.0,
                       canary_ms: int | None = None) -> Served:
        return live.post_split("127.0.0.1", self.settings.proxy_status_port, generation, split,
                               timeout, live.read_secret(self.settings.paths.nginx_secret),
                               canary_ms)

    def signal_proxy_reload(self) -> None:
        container = self._container(services.PROXY)
        if container is None or container.status != "running":
            raise StackError("vision-proxy is not running")
        container.kill(signal=signal.SIGHUP.name)

    def proxy_worker_pids(self) -> set[int]:
        pid = self.backend_pid(services.PROXY)
        return children(pid) if pid else set()

    def proxy_reload_settled(self) -> bool | None:
        pid = self.backend_pid(services.PROXY)
        return reload_settled(pid) if pid else None

    def proxy_orphans(self) -> set[int]:
        # nginx is the container's first process: its workers die with it.
        return set()

    def restart_proxy(self) -> str:
        self.compose("up", "-d", "--no-deps", services.PROXY, timeout=180)
        return "started the vision-proxy container"

    def reopen_proxy_logs(self) -> None:
        container = self._container(services.PROXY)
        if container is None or container.status != "running":
            raise StackError("vision-proxy is not running")
        container.kill(signal=signal.SIGUSR1.name)

    def test_proxy_config(self, config: Path) -> None:
        """`nginx -t` inside the proxy container (or a one-off one), where upstream names
        resolve; raises NginxTestFailed with nginx's message."""
        container = self._container(services.PROXY) if self.proxy_running() else None
        if container is not None:
            result = container.exec_run(
                ["nginx", "-t", "-q", "-c", str(config)])
            code, output = result.exit_code, result.output.decode(errors="replace")
        else:
            proc = self.run_compose("run", "--rm", "--no-deps", "-T", "--entrypoint", "nginx",
                                    services.PROXY, "-t", "-q", "-c", str(config),
                                    timeout=180)
            code, output = proc.returncode, proc.stderr + proc.stdout
        if code != 0:
            lines = [ln for ln in output.splitlines() if "test failed" not in ln and ln.strip()]
            raise nginx.NginxTestFailed("; ".join(lines) or f"nginx -t exited {code}")
