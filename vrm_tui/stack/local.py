"""The local runtime: nginx (Debian's binary) and two rehearsal backends as plain processes.

Processes are detached from the terminal (new session, no stdin) so they outlive the CLI;
each is recorded with its kernel start time so `vrm down` stops exactly what `vrm up` started.
Everything lives under the state dir: generated configs, pids, logs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import StackError
from vrm_tui.settings import Settings
from vrm_tui.stack import monitoring
from vrm_tui.stack.runtime import ServiceState
from vrm_tui.system import logfiles
from vrm_tui.system.procs import ProcRecord, children, free_ports, port_in_use, start_ticks
from vrm_tui.telemetry.health import probe
from vrm_tui.traffic import nginx
from vrm_tui.traffic.served import ProxyUnreachable, Served, read_served

PROFILE_DIR = nginx.REPO_ROOT / "configs" / "rehearsal"
START_TIMEOUT_S = 20.0


class LocalRuntime:
    """Runs the stack as local processes under `settings.state_dir`."""

    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        state = settings.state_dir
        self.run_dir = state / "run"
        self.log_dir = state / "logs"
        self.store = nginx.ConfigStore(state / "nginx")

    # --- layout --------------------------------------------------------------------------

    def proxy_params(self) -> nginx.ProxyParams:
        s = self.settings
        return nginx.ProxyParams(
            listen=f"{_bracket(s.proxy_bind)}:{s.proxy_port}",
            status_listen=f"127.0.0.1:{s.proxy_status_port}",
            pid_file=self.run_dir / "nginx.pid",
            error_log=self.proxy_error_log(),
            access_log=self.access_log(),
            temp_dir=s.state_dir / "nginx" / "tmp",
            comparison_file=s.state_dir / "performance-comparison.json",
            rate_limit=s.proxy_rate_limit,
            rust_address=s.rust_address,
            ts_address=s.ts_address,
            template=nginx.template_for(s.deploy_dir),
            client_keepalive_timeout=s.proxy_keepalive_timeout,
            upstream_timeout=s.proxy_upstream_timeout,
            retry_process=s.proxy_retry_process,
            health_path=s.health_path,
        )

    def proxy_error_log(self) -> Path:
        return self.log_dir / "proxy-error.log"

    def access_log(self) -> Path:
        return self.log_dir / "proxy-access.log"

    def _log_paths(self, service: str) -> list[Path]:
        if service == services.PROXY:
            return [self.proxy_error_log(), self.access_log()]
        return [self.log_dir / f"{service}.log"]

    def _external(self, service: str) -> str | None:
        backend = services.BACKENDS.get(service)
        if backend == Backend.RUST:
            return self.settings.rust_url
        if backend == Backend.TYPESCRIPT:
            return self.settings.ts_url
        return None

    # --- lifecycle -----------------------------------------------------------------------

    def start_dependencies(self) -> list[str]:
        """The rehearsal backends (none when both are external URLs)."""
        for folder in (self.run_dir, self.log_dir, self.settings.state_dir / "nginx" / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        wanted = [(service, backend) for service, backend in services.BACKENDS.items()
                  if not (self._external(service) or self._record(service))]
        # Chosen together: a backend binds its admin port only once it has started.
        admin_ports = free_ports(len(wanted))
        started = []
        waiting = []
        for (service, backend), admin in zip(wanted, admin_ports, strict=True):
            waiting.append(self._start_backend(service, backend, admin))
            started.append(service)
        for record in waiting:
            self._wait_ready(record, f"http://127.0.0.1:{record.ports['port']}/health")
        return started

    def up(self) -> list[str]:
        started = self.start_dependencies()
        if not self._record(services.PROXY):
            self._start_proxy()
            started.append(services.PROXY)
        if self.settings.monitoring:
            started += self._start_monitoring()
        return started

    def _start_monitoring(self) -> list[str]:
        """Start the nginx exporter and Prometheus when installed (skipped, and shown as
        not installed in status, when not)."""
        s = self.settings
        started = []
        for service in services.MONITORING:
            if self._record(service) or monitoring.binary(service) is None:
                continue
            if service == services.NGINX_EXPORTER:
                self._check_port("NGINX_EXPORTER_PORT", "127.0.0.1", s.nginx_exporter_port)
                command = monitoring.exporter_command(s)
                port, ready = s.nginx_exporter_port, "/metrics"
            else:
                self._check_port("PROMETHEUS_PORT", "127.0.0.1", s.prometheus_port)
                folder = s.state_dir / "prometheus"
                (folder / "data").mkdir(parents=True, exist_ok=True)
                rules = folder / "alert_rules.yml"
                rules.write_text(monitoring.source(s, "alert_rules.yml").read_text())
                config = folder / "prometheus.yml"
                config.write_text(monitoring.render_prometheus(s, rules))
                command = monitoring.prometheus_command(s, config, folder / "data")
                port, ready = s.prometheus_port, "/-/ready"
            record = self._spawn(service, command, {"port": port})
            self._wait_ready(record, f"http://127.0.0.1:{port}{ready}")
            started.append(service)
        return started

    def down(self) -> list[str]:
        return [name for name in reversed(services.MANAGED) if self.stop_service(name)]

    def stop_service(self, service: str) -> bool:
        """Stop one service vrm started (nginx gracefully); True if it was running."""
        record = ProcRecord.load(self.run_dir, service)
        if record is None:
            return False
        stopped = record.stop(signal.SIGQUIT if service == services.PROXY else signal.SIGTERM)
        (self.run_dir / f"{service}.json").unlink(missing_ok=True)
        return stopped

    def _record(self, service: str) -> ProcRecord | None:
        """The record of a running process we started, else None."""
        record = ProcRecord.load(self.run_dir, service)
        return record if record and record.alive() else None

    def _check_port(self, setting: str, host: str, port: int) -> None:
        if port_in_use(host, port):
            raise StackError(
                f"{setting} {port} is already in use on {host}: stop what listens there "
                f"(`ss -ltnp 'sport = :{port}'` shows it) or set {setting} in .env"
            )

    def _start_backend(self, service: str, backend: str, admin: int) -> ProcRecord:
        port = self.settings.rust_port if backend == Backend.RUST else self.settings.ts_port
        setting = "VISION_MANAGER_PORT" if backend == Backend.RUST else "TS_VISION_MANAGER_PORT"
        self._check_port(setting, "127.0.0.1", port)
        command = [
            sys.executable, "-m", "vrm_tui.rehearsal",
            "--flavour", backend,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--profile", str(PROFILE_DIR / f"{backend}.yaml"),
            "--max-vram-gb", str(self.settings.max_vram_gb),
        ]
        ports = {"port": port}
        if self.settings.rehearsal_faults:
            command += ["--faults", "--admin-port", str(admin)]
            ports["admin"] = admin
        return self._spawn(service, command, ports)

    def _spawn(self, service: str, command: list[str], ports: dict[str, int]) -> ProcRecord:
        """Start a process detached from the terminal, logging to logs/<service>.log."""
        with open(self.log_dir / f"{service}.log", "ab") as out:
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        record = ProcRecord.of(service, proc.pid, command, ports)
        record.save(self.run_dir)
        return record

    def _wait_ready(self, record: ProcRecord, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not record.alive():
                tail = "\n  ".join(logfiles.last_lines(self.log_dir / f"{record.service}.log", 8))
                raise StackError(f"{record.service} exited at start; its log ends:\n  {tail}")
            if probe(url, timeout=0.5).healthy:
                return
            time.sleep(0.05)
        raise StackError(f"{record.service} did not answer {url} within {START_TIMEOUT_S:.0f}s")

    def _start_proxy(self) -> None:
        if self.store.current() is None:
            raise StackError("no nginx config generation yet: run `vrm deploy` or `vrm up`")
        s = self.settings
        self._check_port("PROXY_PORT", s.proxy_bind, s.proxy_port)
        self._check_port("PROXY_STATUS_PORT", "127.0.0.1", s.proxy_status_port)
        params = self.proxy_params()
        params.pid_file.unlink(missing_ok=True)
        command = [nginx.nginx_binary(s.nginx_bin), "-e", str(params.error_log),
                   "-c", str(self.store.main_config)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=15,
                              stdin=subprocess.DEVNULL, check=False, start_new_session=True)
        if proc.returncode != 0:
            raise StackError(f"nginx did not start: {proc.stderr.strip()}")
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                pid = int(params.pid_file.read_text().strip())
                if start_ticks(pid) is not None:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise StackError(f"nginx started but wrote no pid file; see {params.error_log}")
            time.sleep(0.01)
        ProcRecord.of(services.PROXY, pid, command, {"port": s.proxy_port}).save(self.run_dir)
        last = ""
        while time.monotonic() < deadline:
            try:
                read_served("127.0.0.1", s.proxy_status_port, timeout=0.5)
                return
            except ProxyUnreachable as exc:
                last = str(exc)
            time.sleep(0.02)
        raise StackError(f"nginx started but does not answer: {last}")

    # --- reading -------------------------------------------------------------------------

    def services(self) -> list[ServiceState]:
        found = []
        names = services.MANAGED if self.settings.monitoring else services.CORE
        for service in names:
            if service in services.MONITORING and monitoring.binary(service) is None \
                    and not self._record(service):
                found.append(ServiceState(service, "not installed",
                                          detail=monitoring.INSTALL_HINT[service]))
                continue
            external = self._external(service)
            if external:
                found.append(ServiceState(service, "external", url=external))
                continue
            record = ProcRecord.load(self.run_dir, service)
            port = record.ports.get("port") if record else None
            url = f"http://127.0.0.1:{port}" if port else None
            if record is None:
                found.append(ServiceState(service, "stopped"))
            elif record.alive():
                found.append(ServiceState(service, "running", record.pid, url))
            else:
                found.append(ServiceState(service, "exited", record.pid, url,
                                          detail="started by vrm, no longer running"))
        return found

    def admin_url(self, service: str) -> str | None:
        """The fault-injection endpoint of a rehearsal backend we started (loopback only)."""
        record = self._record(service)
        if record and "admin" in record.ports:
            return f"http://127.0.0.1:{record.ports['admin']}"
        return None

    def backend_pid(self, service: str) -> int | None:
        record = self._record(service)
        return record.pid if record else None

    def log_lines(self, service: str, tail: int = 100, follow: bool = False,
                  keep_going: Callable[[], bool] = lambda: True) -> Iterator[str]:
        if service not in services.MANAGED:
            raise StackError(f"unknown service {service!r}; the local runtime runs "
                             f"{', '.join(services.MANAGED)}")
        if self._external(service):
            raise StackError(f"{service} is external ({self._external(service)}): vrm has no logs")
        paths = self._log_paths(service)
        if follow:
            return logfiles.follow(paths, tail, keep_going)
        return logfiles.tail_once(paths, tail)

    # --- proxy control -------------------------------------------------------------------

    def test_proxy_config(self, config: Path) -> None:
        nginx.test_config(config, error_log=self.proxy_error_log(),
                          binary=self.settings.nginx_bin)

    def proxy_running(self) -> bool:
        return self._record(services.PROXY) is not None

    def served(self, timeout: float = 1.0) -> Served:
        return read_served("127.0.0.1", self.settings.proxy_status_port, timeout=timeout)

    def signal_proxy_reload(self) -> None:
        record = self._record(services.PROXY)
        if record is None:
            raise StackError("vision-proxy is not running")
        try:
            os.kill(record.pid, signal.SIGHUP)
        except ProcessLookupError:
            raise StackError("vision-proxy exited before it could be reloaded") from None

    def proxy_worker_pids(self) -> set[int]:
        record = self._record(services.PROXY)
        return children(record.pid) if record else set()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
