"""The compose runtime: the seed's docker compose stack, driven like the local one.

Up and down go through `docker compose` (or `docker-compose` v1 where that is what the host
has); status, logs, reload and the proxy's worker pids through the docker SDK. The state
dir is mounted at the same path in the proxy container, so vrm renders nginx's config and
reads its access log exactly as with local processes, and `nginx -t` runs inside the
container, where the backends' service names resolve.

vrm's own helpers run as the `vrm-control` service (`python -m vrm_tui.control`): the parity
comparator nginx mirrors to, and a standby migration guard that adopts a migration whose guard
is gone. It reaches nginx over the compose network (`ControlRuntime`) and has no Docker access.
Rollback and status reach nginx's status listener directly: no Docker API call on that path.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from vrm_tui.core import services
from vrm_tui.core.errors import NginxTestFailed, ProxyUnreachable, StackError
from vrm_tui.core.paths import REPO_ROOT
from vrm_tui.settings import RuntimeName, Settings
from vrm_tui.stack import monitoring
from vrm_tui.stack.listener import StatusListener
from vrm_tui.stack.runtime import ServiceState, run_state
from vrm_tui.system import logfiles
from vrm_tui.system.procs import children, port_in_use, reload_settled
from vrm_tui.traffic import live, nginx
from vrm_tui.traffic.mirror import Mirror, MirrorState

COMPOSE_DIR = REPO_ROOT / "docker"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
STATUS_PORT = 3010  # the proxy container's status listener, published on 127.0.0.1 only
ALERTMANAGER_PORT = 9093  # Alertmanager's in its container (prometheus.yml names it)
PORTS = {services.RUST: 3001, services.TYPESCRIPT: 3002}
INSTALL_HINT = "sudo apt-get install -y docker.io docker-compose"
OVERRIDE = "docker-compose.override.yml"
# VRM_COMPOSE_PROFILE -> the overlay on docker-compose.yml that picks the backends
OVERLAYS: dict[str, str | None] = {
    "rehearsal": "docker-compose.rehearsal.yml",  # vrm's rehearsal backend
    "production": "docker-compose.gpu.yml",  # the team's images, a GPU reserved for each
    "production-cpu": None,  # the same images, no GPU reservation (a host without one)
}
CONTROL = services.CONTROL
FLEET_PROFILE = "fleet"  # docker-compose.yml's profile of the fleet-agent service
CONTROL_HOST = 10  # vrm-control's fixed address in the project's /24 (nginx admits it)
EXPORTER_HOST = 11  # the exporter's (it alone may read /nginx_status over the network)


def host_address(network: ipaddress.IPv4Network, host: int) -> ipaddress.IPv4Address:
    """Address number `host` of the project's network (1 is the gateway: the host itself)."""
    return network.network_address + host


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


class ComposeRuntime(StatusListener):
    """Runs the stack as compose services in the deployment's own project (the seed's
    service names; containers found by compose's project and service labels)."""

    name: RuntimeName = "compose"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.log_dir = settings.paths.logs
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
        overlay = OVERLAYS[self.settings.compose_profile]
        override = override_file(self.settings)
        return [COMPOSE_DIR / "docker-compose.yml", *([COMPOSE_DIR / overlay] if overlay else []),
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
            "VRM_GATEWAY": str(host_address(self.subnet, 1)),
            "VRM_IMAGE_TAG": self.image_tag,
            "VRM_CONTROL_TAG": self.control_tag,
            "VRM_CONTROL_ADDRESS": str(host_address(self.subnet, CONTROL_HOST)),
            "VRM_EXPORTER_ADDRESS": str(host_address(self.subnet, EXPORTER_HOST)),
            "VRM_DEPLOY_DIR": str(s.deploy_dir), "PARITY_PORT": str(s.parity_port),
            "ALERTMANAGER_PORT": str(s.alertmanager_port),
            "VRM_ALERTMANAGER_DIR": str(s.paths.alertmanager),
            # this host's name in the fleet as the host's vrm knows it (not the container's)
            "VRM_FLEET_HOST": s.fleet_host,
            # vrm-control runs as the state dir's owner: it reads the secret only that
            # owner may read, and writes the journal and the migration state as the CLI does
            "VRM_UID": str(s.state_dir.stat().st_uid) if s.state_dir.exists() else "0",
            "VRM_GID": str(s.state_dir.stat().st_gid) if s.state_dir.exists() else "0",
        })
        if self.fleet_member:  # the fleet-agent service's profile, beside the user's own
            env["COMPOSE_PROFILES"] = ",".join(
                [p for p in env.get("COMPOSE_PROFILES", "").split(",") if p] + [FLEET_PROFILE])
        return env

    @property
    def fleet_member(self) -> bool:
        """This host is a fleet's (VRM_FLEET and VRM_FLEET_ENDPOINTS): its agent is a
        service of the stack."""
        return bool(self.settings.fleet and self.settings.fleet_endpoints)

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

    @cached_property
    def control_tag(self) -> str:
        """vrm-control's tag: the base image, its Dockerfile and all of vrm's code and
        templates (it runs the guard and the comparator from them)."""
        digest = hashlib.sha256(self.settings.base_image.encode())
        root = COMPOSE_DIR.parent
        sources = sorted([COMPOSE_DIR / "Dockerfile.control", root / "pyproject.toml",
                          *(root / "vrm_tui").rglob("*.py"), *(root / "nginx").rglob("*"),
                          *(root / "configs").rglob("*")])
        for path in sources:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode())
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
            pid_file=s.paths.nginx_pid,
            error_log=self.proxy_error_log(),
            access_log=self.access_log(),
            temp_dir=s.paths.nginx_temp,
            comparison_file=s.paths.comparison,
            rate_limit=s.proxy_rate_limit,
            rust_address=f"{services.RUST}:{PORTS[services.RUST]}",
            ts_address=f"{services.TYPESCRIPT}:{PORTS[services.TYPESCRIPT]}",
            daemon=False,
            # The status listener admits the host (through the published port, seen as the
            # network's gateway) and vrm-control; /nginx_status also the exporter.
            status_allow=("127.0.0.1", "::1", *self._admitted(), str(host_address(
                self.subnet, EXPORTER_HOST))),
            split_allow=("127.0.0.1", "::1", *self._admitted()),
            client_keepalive_timeout=s.proxy_keepalive_timeout,
            upstream_timeout=s.proxy_upstream_timeout,
            canary_ms=None if s.proxy_canary_timeout is None else s.proxy_canary_timeout * 1000,
            retry_process=s.retry_process,
            health_path=s.health_path,
            # the master starts as root in its container (it reads the state dir); its
            # workers, which face the traffic, as the container's `nobody`. Inside the
            # container every folder above the mounted state dir is docker's (0755).
            worker_user=nginx.WORKER_USER,
            template=nginx.template_for(s.deploy_dir),
            live=self._live(),
            mirror=self.mirror(),
        )

    def _admitted(self) -> tuple[str, str]:
        return (str(host_address(self.subnet, 1)), str(host_address(self.subnet, CONTROL_HOST)))

    def mirror(self) -> Mirror:
        """What nginx mirrors (`vrm parity on|off`, else PARITY_SAMPLE) to the comparator in
        vrm-control, by its fixed address (a reload never waits on name resolution)."""
        state = MirrorState.load(self.settings.paths.parity_state)
        sample = self.settings.parity_sample if state.sample is None else state.sample
        return Mirror(sample, self.settings.parity_port, state.routes,
                      str(host_address(self.subnet, CONTROL_HOST)))

    def _live(self) -> nginx.LiveSplit | None:
        """The proxy image installs Debian's Lua module (docker/Dockerfile.proxy)."""
        if not self.settings.live_split:
            return None
        return live.live_split(self.settings.paths) \
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
        """The services `vrm status` shows. A fleet's agent runs too (`up`) but, as in the
        local runtime, `vrm fleet status` shows it: it has no health endpoint."""
        names = [*services.CORE, CONTROL]
        if self.settings.monitoring:
            names += list(services.MONITORING)
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
        for folder in (self.log_dir, self.settings.paths.run):
            folder.mkdir(parents=True, exist_ok=True)
        before = self._running()
        if services.PROXY not in before and port_in_use(self.settings.proxy_bind,
                                                        self.settings.proxy_port):
            raise StackError(f"PROXY_PORT {self.settings.proxy_port} is already in use on "
                             f"{self.settings.proxy_bind}: stop what listens there or set "
                             "PROXY_PORT in .env")
        wanted = [*self._wanted(), *([services.FLEET_AGENT] if self.fleet_member else [])]
        missing = [name for name in wanted if name not in before]
        if self.settings.monitoring:
            self._alertmanager_config(reload=services.ALERTMANAGER in before)
        if missing:
            self.compose("up", "-d", *wanted)
        if CONTROL in missing:
            self._wait_control()
        return missing

    def _alertmanager_config(self, reload: bool) -> None:
        """alertmanager.yml with `.env`'s routes as they are now (checked by Console.up),
        rendered into the state dir the service mounts before it starts; a running one
        reloads it in place (SIGHUP), as in the local runtime."""
        monitoring.write_alertmanager_config(self.settings, self.settings.paths.alertmanager)
        container = self._container(services.ALERTMANAGER) if reload else None
        if container is not None and container.status == "running":
            self._signal(container, signal.SIGHUP)

    @staticmethod
    def _signal(container: Any, sig: signal.Signals) -> None:
        """Signal a container's first process (a reload, a log reopen) from inside it. Not
        with `docker kill`: the engine records any kill, SIGHUP too, as an operator's stop,
        and a container so marked is not started again when the engine restarts (a host
        reboot), whatever its restart policy (moby issue 47792)."""
        done = container.exec_run(["/bin/sh", "-c", f"kill -{sig.name.removeprefix('SIG')} 1"])
        if done.exit_code != 0:
            raise StackError(f"could not send {sig.name} to {container.name}: "
                             f"{done.output.decode(errors='replace').strip()}")

    def _wait_control(self, timeout: float = 60.0) -> None:
        """vrm-control answers once its comparator listens (its guard stands by sooner)."""
        from vrm_tui.telemetry.health import probe

        url = f"http://127.0.0.1:{self.settings.parity_port}{services.HEALTH_PATH[CONTROL]}"
        deadline = time.monotonic() + timeout
        while not probe(url, timeout=0.5).healthy:
            if time.monotonic() > deadline:
                raise StackError(f"{CONTROL} did not answer {url} within {timeout:.0f}s; "
                                 f"`vrm logs {CONTROL}` says why")
            time.sleep(0.2)

    def down(self) -> list[str]:
        before = self._running()
        if before:
            self.compose("down", "--remove-orphans")
        return [name for name in (*services.MANAGED, services.FLEET_AGENT) if name in before]

    def stop_service(self, service: str) -> bool:
        if service == services.PARITY:
            return False  # the comparator lives in vrm-control, which keeps running
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
                 services.NGINX_EXPORTER: self.settings.nginx_exporter_port,
                 services.ALERTMANAGER: self.settings.alertmanager_port,
                 CONTROL: self.settings.parity_port}
        for name in self._wanted():
            container = self._container(name)
            if container is None:
                found.append(ServiceState(name, "stopped"))
                continue
            state = container.attrs.get("State", {})
            health = (state.get("Health") or {}).get("Status", "")
            url = f"http://127.0.0.1:{ports[name]}" if name in ports else None
            status = run_state(container.status)
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
        if service not in (*services.MANAGED, services.GRAFANA, CONTROL, services.FLEET_AGENT):
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
        """nginx answering on its status listener is running, without asking Docker (a
        rollback makes no Docker API call); only when it does not answer, the engine."""
        try:
            self.served(timeout=0.5)
            return True
        except ProxyUnreachable:
            pass
        container = self._container(services.PROXY)
        return container is not None and container.status == "running"

    def signal_proxy_reload(self) -> None:
        container = self._container(services.PROXY)
        if container is None or container.status != "running":
            raise StackError("vision-proxy is not running")
        self._signal(container, signal.SIGHUP)

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
        self._signal(container, signal.SIGUSR1)

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
            raise NginxTestFailed("; ".join(lines) or f"nginx -t exited {code}")


class ControlRuntime(ComposeRuntime):
    """The compose stack as vrm-control sees it from inside the project. Its loopback
    forwards every published port to its service (`vrm_tui.control`), so the settings mean
    what they mean on the host; it has no Docker engine (the container gets no socket:
    whoever reaches the engine is root on the host). Setting and reading the split and the
    access log work; a config reload or a restart is the host's vrm's."""

    @cached_property
    def client(self) -> Any:
        raise StackError(f"{CONTROL} has no Docker access: reload, restart and logs of the "
                         "compose stack run from the host's vrm")

    def proxy_running(self) -> bool:
        try:
            self.served(timeout=0.5)
            return True
        except ProxyUnreachable:
            return False

    def proxy_worker_pids(self) -> set[int]:
        return set()  # nginx's pids are in another container's namespace

    def proxy_reload_settled(self) -> bool | None:
        return None

    def stop_service(self, service: str) -> bool:
        return False

    def forwards(self) -> dict[int, tuple[str, int]]:
        """Each port the host publishes on 127.0.0.1 -> the service and port behind it."""
        s = self.settings
        found = {s.proxy_port: (services.PROXY, 3000),
                 s.proxy_status_port: (services.PROXY, STATUS_PORT),
                 s.rust_port: (services.RUST, PORTS[services.RUST]),
                 s.ts_port: (services.TYPESCRIPT, PORTS[services.TYPESCRIPT])}
        if s.monitoring:
            found[s.prometheus_port] = (services.PROMETHEUS, 9090)
            found[s.nginx_exporter_port] = (services.NGINX_EXPORTER, 9113)
            # the guard's alert gate and rollout events reach Alertmanager as on the host
            found[s.alertmanager_port] = (services.ALERTMANAGER, ALERTMANAGER_PORT)
        found.pop(s.parity_port, None)  # the comparator's own
        return found
