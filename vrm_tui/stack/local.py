"""The local runtime: nginx (Debian's binary) and two rehearsal backends as plain processes.

Processes are detached from the terminal (new session, no stdin) so they outlive the CLI;
each is recorded with its kernel start time so `vrm down` stops exactly what `vrm up` started.
Everything lives under the state dir: generated configs, pids, logs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vrm_tui.core import services
from vrm_tui.core.backend import Backend
from vrm_tui.core.errors import BadInput, ProxyUnreachable, StackError, VrmError
from vrm_tui.core.paths import CONFIGS
from vrm_tui.settings import RuntimeName, Settings
from vrm_tui.stack import monitoring
from vrm_tui.stack.listener import StatusListener
from vrm_tui.stack.runtime import ServiceState
from vrm_tui.system import logfiles, procs
from vrm_tui.system.procs import ProcRecord, children, free_ports, port_in_use, start_ticks
from vrm_tui.traffic import live, nginx
from vrm_tui.traffic.mirror import Mirror, MirrorState
from vrm_tui.traffic.served import read_served

PROFILE_DIR = CONFIGS / "rehearsal"
START_TIMEOUT_S = 20.0


class LocalRuntime(StatusListener):
    """Runs the stack as local processes under `settings.state_dir`."""

    name: RuntimeName = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.run_dir = settings.paths.run
        self.log_dir = settings.paths.logs
        self.store = nginx.ConfigStore(settings.paths.nginx)
        # Where each log ended before this process spawned into it: a start that fails shows
        # its own lines, never those of an earlier run.
        self._log_start: dict[str, int] = {}

    # --- layout --------------------------------------------------------------------------

    def proxy_params(self) -> nginx.ProxyParams:
        s = self.settings
        return nginx.ProxyParams(
            listen=f"{_bracket(s.proxy_bind)}:{s.proxy_port}",
            status_listen=f"127.0.0.1:{s.proxy_status_port}",
            pid_file=self.run_dir / "nginx.pid",
            error_log=self.proxy_error_log(),
            access_log=self.access_log(),
            temp_dir=s.paths.nginx_temp,
            comparison_file=s.paths.comparison,
            rate_limit=s.proxy_rate_limit,
            rust_address=s.rust_address,
            ts_address=s.ts_address,
            template=nginx.template_for(s.deploy_dir),
            client_keepalive_timeout=s.proxy_keepalive_timeout,
            upstream_timeout=s.proxy_upstream_timeout,
            canary_ms=None if s.proxy_canary_timeout is None else s.proxy_canary_timeout * 1000,
            retry_process=s.retry_process,
            worker_user=self.worker_user(),
            mirror=self.mirror(),
            live=self._live(),
            health_path=s.health_path,
        )

    def _live(self) -> nginx.LiveSplit | None:
        """Zero-reload weight changes when this host's nginx has the Lua module, the
        deployment did not turn them off, and the template has the split's placeholders."""
        if not (self.settings.live_split and live.modules_installed()):
            return None
        return live.live_split(self.settings.paths) \
            if nginx.supports_live(nginx.template_for(self.settings.deploy_dir)) else None

    def worker_user(self) -> str | None:
        """Who nginx's workers run as when vrm runs as root: `nobody`, unless a folder above
        the state dir keeps it out (then root, and `vrm status` says which folder)."""
        if os.geteuid() != 0:
            return None
        if nginx.unreachable_for(nginx.WORKER_USER, self.settings.state_dir) is not None:
            return None
        return nginx.WORKER_USER

    # --- parity (vrm parity): the comparator runs next to the backends while nginx mirrors ---

    def mirror(self) -> Mirror:
        """What nginx mirrors: the operator's sample (`vrm parity on|off`), else
        PARITY_SAMPLE; the routes the console checked in configs/parity.yaml."""
        state = MirrorState.load(self.settings.paths.parity_state)
        sample = self.settings.parity_sample if state.sample is None else state.sample
        return Mirror(sample, self.settings.parity_port, state.routes)

    def _start_parity(self) -> list[str]:
        if not self.mirror().on or self._record(services.PARITY):
            return []
        s = self.settings
        self._check_port("PARITY_PORT", "127.0.0.1", s.parity_port)
        command = [sys.executable, "-m", "vrm_tui.parity", "--port", str(s.parity_port),
                   "--primary", s.backend_url(Backend.TYPESCRIPT),
                   "--candidate", s.backend_url(Backend.RUST),
                   "--max-rps", f"{s.parity_max_rps:g}", "--timeout", str(s.proxy_upstream_timeout),
                   "--deploy-dir", str(s.deploy_dir), "--state-dir", str(s.state_dir)]
        record = self._spawn(services.PARITY, command, {"port": s.parity_port})
        self._wait_ready(record, f"http://127.0.0.1:{s.parity_port}/health")
        self._refresh_prometheus()
        return [services.PARITY]
    # --- end parity ---

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
        for folder in (self.run_dir, self.log_dir, self.settings.paths.nginx_temp):
            folder.mkdir(parents=True, exist_ok=True)
        wanted = [(service, backend) for service, backend in services.BACKENDS.items()
                  if not (self._external(service) or self._record(service))]
        profiles = {service: self._profile(backend) for service, backend in wanted}
        # Chosen together: a backend binds its admin port only once it has started.
        # Not one of the stack's own ports: those not yet bound look free.
        try:
            chosen = free_ports(len(wanted), avoid=set(self.settings.ports.values()))
        except ValueError as exc:  # VRM_PORT_RANGE malformed: one line, exit 2
            raise BadInput(str(exc)) from None
        set_ports = self.settings.rehearsal_admin_ports
        admin_ports = [set_ports.get(backend) or free for (_, backend), free
                       in zip(wanted, chosen, strict=True)]
        for (_, backend), port in zip(wanted, admin_ports, strict=True):
            if set_ports.get(backend):
                name = f"REHEARSAL_{'RUST' if backend == 'rust' else 'TS'}_ADMIN_PORT"
                self._check_port(name, "127.0.0.1", port)
        waiting: list[ProcRecord] = []
        try:
            for (service, backend), admin in zip(wanted, admin_ports, strict=True):
                waiting.append(self._start_backend(service, backend, admin, profiles[service]))
            for record in waiting:
                self._wait_ready(record, f"http://127.0.0.1:{record.ports['port']}/health")
        except BaseException:
            # One backend failed: stop the others this bring-up started, so nothing is left
            # running that the operator did not get.
            for record in waiting:
                self.stop_service(record.service)
            raise
        return [record.service for record in waiting] + self._start_parity()

    def _profile(self, backend: str) -> Path:
        """The deployment's own `configs/rehearsal/<backend>.yaml` when it has one, else vrm's;
        checked here so that a bad profile is refused before anything starts."""
        from vrm_tui.core.errors import ProfileError
        from vrm_tui.rehearsal.profile import load_profile

        own = self.settings.deploy_dir / "configs" / "rehearsal" / f"{backend}.yaml"
        path = own if own.is_file() else PROFILE_DIR / f"{backend}.yaml"
        try:
            profile = load_profile(path)
        except ProfileError as exc:
            raise BadInput(f"rehearsal profile {exc}") from None
        if profile.backend != backend:
            raise BadInput(f"rehearsal profile {path}: backend={profile.backend!r}: "
                           f"expected {backend}")
        return path

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
            running = self._record(service)
            if running is not None and service == services.ALERTMANAGER:
                # .env's routes as they are now (checked by Console.up), reloaded in place
                monitoring.write_alertmanager_config(s, s.paths.alertmanager)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(running.pid, signal.SIGHUP)
            if running or monitoring.binary(service) is None:
                continue
            host = monitoring.LOOPBACK  # in a fleet, what other hosts use listens there too
            if service == services.NGINX_EXPORTER:
                host = monitoring.exporter_host(s)
                self._check_port("NGINX_EXPORTER_PORT", host, s.nginx_exporter_port)
                command = monitoring.exporter_command(s)
                port, ready = s.nginx_exporter_port, "/metrics"
            elif service == services.ALERTMANAGER:  # routes checked by Console.up
                self._check_port("ALERTMANAGER_PORT", monitoring.LOOPBACK, s.alertmanager_port)
                if (gossip := monitoring.fleet_address(s)) is not None:
                    self._check_port("ALERTMANAGER_CLUSTER_PORT", gossip,
                                     s.alertmanager_cluster_port)
                folder = s.paths.alertmanager
                config = monitoring.write_alertmanager_config(s, folder)
                command = monitoring.alertmanager_command(s, config, folder / "data")
                port, ready = s.alertmanager_port, "/-/ready"
            else:
                self._check_port("PROMETHEUS_PORT", "127.0.0.1", s.prometheus_port)
                folder = s.paths.prometheus
                (folder / "data").mkdir(parents=True, exist_ok=True)
                config = self._write_prometheus_config()
                command = monitoring.prometheus_command(s, config, folder / "data")
                port, ready = s.prometheus_port, "/-/ready"
            record = self._spawn(service, command, {"port": port})
            self._wait_ready(record, f"http://{monitoring.hostport(host, port)}{ready}")
            started.append(service)
        return started

    def _write_prometheus_config(self) -> Path:
        folder = self.settings.paths.prometheus
        rules = folder / "alert_rules.yml"
        rules.write_text(monitoring.render_rules(self.settings))
        config = folder / "prometheus.yml"
        config.write_text(monitoring.render_prometheus(self.settings, rules, self.mirror().on))
        return config

    def _refresh_prometheus(self) -> None:
        """Re-render Prometheus's targets (parity switched) and ask it to reload, if it runs.

        By SIGHUP, which only the user that started it may send: its HTTP lifecycle API
        (`/-/reload`, `/-/quit`) is off, or any local user could stop monitoring."""
        record = self._record(services.PROMETHEUS)
        if record is None:
            return
        self._write_prometheus_config()
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGHUP)

    def down(self) -> list[str]:
        return [name for name in reversed(services.MANAGED) if self.stop_service(name)]

    def stop_service(self, service: str) -> bool:
        """Stop one service vrm started (nginx gracefully, with any orphaned workers of a
        killed master); True if something was running."""
        record = self._record(service)
        stopped = False
        if record is not None:
            stopped = record.stop(signal.SIGQUIT if service == services.PROXY
                                  else signal.SIGTERM)
        if service == services.PROXY:
            orphans = self.proxy_orphans()
            if orphans:
                procs.retire(orphans)
                procs.wait_gone(orphans)
                stopped = True
        (self.run_dir / f"{service}.json").unlink(missing_ok=True)
        if service == services.PARITY and not self.mirror().on:
            self._refresh_prometheus()  # parity is off: no target left down
        return stopped

    def _record(self, service: str) -> ProcRecord | None:
        """The running process of a service we started: its record, or, when vrm was killed
        before writing one (or it was lost), the process found by what it writes to: a
        backend's stdout is its log, an nginx master holds this state dir's proxy logs."""
        record = ProcRecord.load(self.run_dir, service)
        if record and record.alive():
            return record
        if service == services.PROXY:
            found = {pid for pid in self._nginx_pids()
                     if procs.cmdline(pid).startswith("nginx: master process")}
        else:
            found = procs.writing_to(self.log_dir / f"{service}.log")
        for pid in sorted(found):
            with contextlib.suppress(ProcessLookupError):
                ports = record.ports if record else {}
                return ProcRecord.of(service, pid, procs.cmdline(pid).split(), ports)
        return None

    def _nginx_pids(self) -> set[int]:
        return procs.nginx_holding([self.proxy_error_log(), self.access_log()])

    def _check_port(self, setting: str, host: str, port: int) -> None:
        if port_in_use(host, port):
            raise StackError(
                f"{setting} {port} is already in use on {host}: stop what listens there "
                f"(`ss -ltnp 'sport = :{port}'` shows it) or set {setting} in .env"
            )

    def _start_backend(self, service: str, backend: str, admin: int,
                       profile: Path) -> ProcRecord:
        port = self.settings.rust_port if backend == Backend.RUST else self.settings.ts_port
        setting = "VISION_MANAGER_PORT" if backend == Backend.RUST else "TS_VISION_MANAGER_PORT"
        hosts = monitoring.listen_hosts(self.settings)  # in a fleet: scraped by every host
        for host in hosts:
            self._check_port(setting, host, port)
        command = [
            sys.executable, "-m", "vrm_tui.rehearsal",
            "--flavour", backend,
            *(arg for host in hosts for arg in ("--host", host)),
            "--port", str(port),
            "--profile", str(profile),
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
            self._log_start[service] = out.seek(0, os.SEEK_END)
            proc = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        record = ProcRecord.of(service, proc.pid, command, ports)
        record.save(self.run_dir)
        return record

    def _wait_ready(self, record: ProcRecord, url: str) -> None:
        from vrm_tui.telemetry.health import probe

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not record.alive():
                raise StackError(f"{record.service} exited at start: {self._start_log(record)}")
            if probe(url, timeout=0.5).healthy:
                return
            time.sleep(0.05)
        raise StackError(f"{record.service} did not answer {url} within {START_TIMEOUT_S:.0f}s")

    def _start_log(self, record: ProcRecord) -> str:
        """The last lines this start wrote to the service's log, as one line."""
        path = self.log_dir / f"{record.service}.log"
        try:
            written = logfiles.last_lines(path, 10, since=self._log_start.get(record.service, 0))
        except OSError:
            written = []
        lines = [line.strip() for line in written if line.strip()][-3:]
        return " | ".join(lines) or f"it wrote nothing to {path}"

    def _start_proxy(self, check_ports: bool = True) -> str:
        """Start nginx on `current` (retiring orphaned workers that hold its ports first);
        the master is recorded as soon as its pid file names it. A restart after a crash
        skips the port checks: `current` may listen where nginx last did, not where changed
        settings say (nginx's own bind error still says why it could not start)."""
        if self.store.current() is None:
            raise StackError("no nginx config generation yet: run `vrm deploy` or `vrm up`")
        orphans = self.proxy_orphans()
        if orphans:
            procs.retire(orphans)
        s = self.settings
        if check_ports:
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
        self._start_logkeeper(pid)
        note = f"started nginx (master {pid})"
        if orphans:
            note = (f"master was gone; retired {len(orphans)} orphan workers "
                    f"({', '.join(map(str, sorted(orphans)))}); {note}")
        last = ""
        while time.monotonic() < deadline:
            try:
                read_served("127.0.0.1", s.proxy_status_port, timeout=0.5)
                return note
            except ProxyUnreachable as exc:
                last = str(exc)
            time.sleep(0.02)
        raise StackError(f"nginx started but does not answer: {last}")

    def _start_logkeeper(self, master: int) -> None:
        """Keep nginx's logs capped while this master runs (`stack/logkeeper.py`); it exits
        with the master. Best effort: without it, logs still rotate on every vrm action."""
        log = self.log_dir / "vrm-logkeeper.log"
        try:
            with open(log, "ab") as out:
                subprocess.Popen(
                    [sys.executable, "-m", "vrm_tui.stack.logkeeper",
                     "--deploy-dir", str(self.settings.deploy_dir),
                     "--state-dir", str(self.settings.state_dir), "--master", str(master)],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, close_fds=True, cwd=self.settings.deploy_dir)
        except OSError:
            pass

    # --- reading -------------------------------------------------------------------------

    def services(self) -> list[ServiceState]:
        found = []
        names = services.MANAGED if self.settings.monitoring else (*services.CORE,
                                                                    services.PARITY)
        for service in names:
            if service == services.PARITY and not (self.mirror().on
                                                   or ProcRecord.load(self.run_dir, service)):
                continue  # parity is off and its comparator was never started here
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
            live = self._record(service)
            if live is not None and (record is None or not record.alive()):
                record = live  # found by what it writes to: vrm died before recording it
            port = record.ports.get("port") if record else None
            url = f"http://{monitoring.hostport(self._listen_host(service), port)}" \
                if port else None
            orphans = self.proxy_orphans() if service == services.PROXY and live is None \
                else set()
            if orphans:
                found.append(ServiceState(
                    service, "orphaned", None, url,
                    detail=f"master gone, {len(orphans)} orphan workers "
                           f"({', '.join(map(str, sorted(orphans)))}) still serving"))
            elif record is None:
                found.append(ServiceState(service, "stopped"))
            elif record.alive():
                found.append(ServiceState(service, "running", record.pid, url))
            else:
                found.append(ServiceState(service, "exited", record.pid, url,
                                          detail="started by vrm, no longer running"))
        return found

    def _listen_host(self, service: str) -> str:
        """Where a service answers on this host: loopback, but the nginx exporter listens on
        one address only, in a fleet the advertised one."""
        if service != services.NGINX_EXPORTER:
            return monitoring.LOOPBACK
        try:
            return monitoring.exporter_host(self.settings)
        except VrmError:  # the advertised name no longer resolves: it is shown down
            return monitoring.LOOPBACK

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

    def proxy_reload_settled(self) -> bool | None:
        record = self._record(services.PROXY)
        return procs.reload_settled(record.pid) if record else None

    def proxy_orphans(self) -> set[int]:
        record = self._record(services.PROXY)
        owned = {record.pid} | children(record.pid) if record else set()
        return {pid for pid in self._nginx_pids() - owned
                if not procs.cmdline(pid).startswith("nginx: master process")}

    def restart_proxy(self) -> str:
        record = self._record(services.PROXY)
        if record is not None:
            raise StackError(f"vision-proxy is running (master {record.pid}): nothing to restart")
        return self._start_proxy(check_ports=False)

    def reopen_proxy_logs(self) -> None:
        record = self._record(services.PROXY)
        if record is None:
            raise StackError("vision-proxy is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGUSR1)

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
