"""Prometheus and Alertmanager for a runtime: `monitoring/` rendered with this stack's
addresses, and with the alert routes of `.env`.

The checked-in file is valid as it stands (compose service names), so `promtool check config`
runs on it; a runtime rewrites only the targets, the rules path, Alertmanager's address and
(when set) the intervals and the rules' `for:`. A
deployment's own `monitoring/` next to `.env` wins over vrm's, like `nginx/nginx.conf`.

In a fleet (VRM_FLEET) what other hosts use listens on the advertised address as well
(`fleet_address`): the nginx exporter (scraped by every host's Prometheus) and
Alertmanager's gossip port, where the hosts' Alertmanagers form one cluster (Alertmanager's
own HA: every Prometheus evaluates every host's series and sends to its own Alertmanager,
and the cluster's shared notification log lets one of them notify), so an alert about any
host reaches people once. Alertmanager's API stays on loopback. Outside a fleet everything
stays on loopback.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from vrm_tui.core import services
from vrm_tui.core.errors import BadInput, SettingsError, StackError
from vrm_tui.core.paths import REPO_ROOT
from vrm_tui.settings import Settings

MONITORING = REPO_ROOT / "monitoring"
INSTALL_HINT = {
    services.PROMETHEUS: "sudo apt-get install -y prometheus",
    services.NGINX_EXPORTER: "sudo apt-get install -y prometheus-nginx-exporter",
    services.ALERTMANAGER: "sudo apt-get install -y prometheus-alertmanager",
}
BINARY = {services.PROMETHEUS: "prometheus", services.NGINX_EXPORTER: "prometheus-nginx-exporter",
          services.ALERTMANAGER: "prometheus-alertmanager"}
LOOPBACK = "127.0.0.1"
ALERTMANAGER_JOB = "alertmanager"  # the fleet targets' group naming a host's Alertmanager
CLUSTER_PEER = "cluster_peer"  # its label: the gossip address its cluster peers join


def source(settings: Settings, name: str) -> Path:
    """The deployment's own monitoring file when it has one, else vrm's."""
    own = settings.deploy_dir / "monitoring" / name
    return own if own.is_file() else MONITORING / name


def binary(service: str) -> str | None:
    name = BINARY[service]
    return shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin:/usr/local/bin")


def render_prometheus(settings: Settings, rules: Path, parity: bool = False) -> str:
    """prometheus.yml with loopback targets for the local runtime; the parity comparator's
    job gets its target only while parity is on (an idle comparator is no target down)."""
    import yaml  # here, not at the top: a `vrm rollback` never renders Prometheus

    from vrm_tui.core import yamlfile

    config: dict[str, Any] = yamlfile.load(source(settings, "prometheus.yml"), BadInput)
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == "parity":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{settings.parity_port}"],
                                      "labels": {"service": services.PARITY}}] if parity else []
    address = {
        services.RUST: settings.rust_address,
        services.TYPESCRIPT: settings.ts_address,
        services.PROXY: exporter_address(settings),
        services.PROMETHEUS: f"{LOOPBACK}:{settings.prometheus_port}",
    }
    for job in config.get("scrape_configs", []):
        for group in job.get("static_configs", []):
            service = (group.get("labels") or {}).get("service")
            if service in address:
                group["targets"] = [address[service]]
    config["rule_files"] = [str(rules)]
    if settings.fleet:
        _fleet(config, settings)
    _intervals(config, settings)
    _alerting(config, settings)
    return yaml.safe_dump(config, sort_keys=False)


def _fleet(config: dict[str, Any], settings: Settings) -> None:
    """Fleet mode (VRM_FLEET): this host's own targets say which host they are, and a `fleet`
    job scrapes every other live host, discovered from the file the fleet agent renders
    from etcd (StateDir.fleet_targets). Its groups carry their own `job` and `service`
    labels, so dashboards and rules see every host alike; this host's own entries are
    dropped there (its static jobs scrape it already). Its own targets keep the `instance`
    the other hosts give them (their advertised address): every host's Prometheus then
    raises the same alert with the same labels, which the Alertmanager cluster needs to
    notify it once. The Alertmanagers' groups are for `alerting`, not for scraping."""
    shared = fleet_shared(settings)
    for job in config.get("scrape_configs", []):
        for group in job.get("static_configs", []):
            labels = group.setdefault("labels", {})
            labels["host"] = settings.fleet_host
            if labels.get("service") in shared:
                labels["instance"] = advertised(shared[labels["service"]],
                                                settings.fleet_advertise)
    config.setdefault("scrape_configs", []).append({
        "job_name": "fleet",
        "file_sd_configs": _fleet_sd(settings),
        "relabel_configs": [*_not_this_host(settings), {"source_labels": ["job"],
                                                         "regex": ALERTMANAGER_JOB,
                                                         "action": "drop"}]})


def _fleet_sd(settings: Settings) -> list[dict[str, Any]]:
    return [{"files": [str(settings.paths.fleet_targets)],
             "refresh_interval": "30s"}]  # a missed inotify event, at worst


def _not_this_host(settings: Settings) -> list[dict[str, Any]]:
    return [{"source_labels": ["host"], "regex": re.escape(settings.fleet_host),
             "action": "drop"}]


def fleet_shared(settings: Settings) -> dict[str, str]:
    """What the fleet's other hosts scrape here, service -> its address as this host names
    it: both backends' /metrics and, with monitoring, the nginx exporter. (Not Prometheus:
    each host's scrapes itself, and its API stays on loopback.)"""
    found = {services.RUST: settings.rust_address, services.TYPESCRIPT: settings.ts_address}
    if settings.monitoring:
        found[services.PROXY] = f"{LOOPBACK}:{settings.nginx_exporter_port}"
    return found


def advertised(address: str, advertise: str) -> str:
    """`address` as another host reaches it: a loopback host is replaced by `advertise`."""
    host, _, port = address.rpartition(":")
    bare = host.strip("[]")
    try:
        loopback = bare == "localhost" or ipaddress.ip_address(bare).is_loopback
    except ValueError:
        loopback = False
    return f"{advertise}:{port}" if loopback else address


def fleet_address(settings: Settings) -> str | None:
    """In a fleet, the IP address VRM_FLEET_ADVERTISE names: where the services other hosts
    use listen, beside (or instead of) loopback; None outside a fleet. Never every
    interface: an unspecified address is refused, and so is one this host does not hold."""
    return _bindable(settings.fleet_advertise) if settings.fleet else None


@functools.lru_cache(maxsize=8)
def _bindable(name: str) -> str:
    """`name` (a host name or an IP) resolved once to an IP address this host can bind."""
    try:
        found = socket.getaddrinfo(name.strip("[]"), None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise StackError(f"VRM_FLEET_ADVERTISE={name}: does not resolve ({exc})") from None
    family, _, _, _, where = found[0]
    ip = str(where[0])
    if ipaddress.ip_address(ip).is_unspecified:
        raise BadInput(f"VRM_FLEET_ADVERTISE={name}: names every interface; name the one "
                       "address other hosts reach this one at")
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((ip, 0))
        except OSError as exc:
            raise StackError(f"VRM_FLEET_ADVERTISE={name}: {ip} is not an address of this "
                             f"host ({exc.strerror})") from None
    return ip


def hostport(host: str, port: int) -> str:
    """host:port, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen_hosts(settings: Settings) -> list[str]:
    """Where a service both this host and the fleet's other hosts use listens: loopback,
    and in a fleet the advertised address too."""
    own = fleet_address(settings)
    return [LOOPBACK] if own in (None, LOOPBACK) else [LOOPBACK, str(own)]


def exporter_host(settings: Settings) -> str:
    """The nginx exporter listens on one address: loopback, or in a fleet the advertised
    one (where this host's Prometheus scrapes it too)."""
    return fleet_address(settings) or LOOPBACK


def exporter_address(settings: Settings) -> str:
    return hostport(exporter_host(settings), settings.nginx_exporter_port)


def cluster_peers(settings: Settings) -> list[str]:
    """The other hosts' Alertmanager gossip addresses, from the fleet targets file (rendered
    from etcd at `vrm up`, then by the agent); none when there is no file yet."""
    try:
        groups = json.loads(settings.paths.fleet_targets.read_text())
    except (OSError, ValueError):
        return []
    labels = [group.get("labels") or {} for group in groups if isinstance(group, dict)] \
        if isinstance(groups, list) else []
    return sorted({str(found[CLUSTER_PEER]) for found in labels
                   if found.get("job") == ALERTMANAGER_JOB and CLUSTER_PEER in found
                   and found.get("host") != settings.fleet_host})


def prometheus_command(settings: Settings, config: Path, data: Path) -> list[str]:
    return [binary(services.PROMETHEUS) or "prometheus", f"--config.file={config}",
            f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{settings.prometheus_port}"]
    # No --web.enable-lifecycle: its /-/quit lets any local user stop monitoring; vrm
    # reloads Prometheus with SIGHUP instead.


def exporter_command(settings: Settings) -> list[str]:
    return [binary(services.NGINX_EXPORTER) or "prometheus-nginx-exporter",
            f"-nginx.scrape-uri=http://127.0.0.1:{settings.proxy_status_port}/nginx_status",
            f"-web.listen-address={exporter_address(settings)}"]


# --- rules and intervals (settings for rehearsals and tests; the shipped values stand) -------

def render_rules(settings: Settings) -> str:
    """alert_rules.yml, with every rule's `for:` set to ALERT_RULE_FOR when it is set."""
    text = source(settings, "alert_rules.yml").read_text()
    if settings.alert_rule_for:
        text = re.sub(r"(?m)^(\s+for:\s*)\S+", rf"\g<1>{settings.alert_rule_for}", text)
    return text


def _intervals(config: dict[str, Any], settings: Settings) -> None:
    overrides = {"scrape_interval": settings.prometheus_scrape_interval,
                 "evaluation_interval": settings.prometheus_evaluation_interval}
    config.setdefault("global", {}).update({k: v for k, v in overrides.items() if v})


def _alerting(config: dict[str, Any], settings: Settings) -> None:
    """Prometheus sends to this stack's Alertmanager on loopback, and only to it. In a fleet
    every host's Prometheus evaluates every host's series, so each Alertmanager of the
    cluster gets every fleet-wide alert from its own Prometheus: its API (silences, which
    would also silence the guard's critical-alert gate) needs to listen nowhere else."""
    config["alerting"] = {"alertmanagers": [{"static_configs": [
        {"targets": [f"{LOOPBACK}:{settings.alertmanager_port}"]}]}]}


# --- Alertmanager ----------------------------------------------------------------------------

def alertmanager_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.alertmanager_port}"


def _receiver_configs(settings: Settings, resolved: bool) -> dict[str, Any]:
    """The receiver's configs from `.env`; `resolved`: also say when an alert ends (rollout
    events are not alerts that end)."""
    found: dict[str, Any] = {}
    if settings.alert_webhook_urls:
        found["webhook_configs"] = [{"url": url, "send_resolved": resolved}
                                    for url in settings.alert_webhook_urls]
    if settings.alert_slack_webhook_url:
        found["slack_configs"] = [{"api_url": settings.alert_slack_webhook_url,
                                   "send_resolved": resolved,
                                   "title": '{{ template "vrm.title" . }}',
                                   "text": '{{ template "vrm.text" . }}'}]
    if settings.alert_email_to:
        found["email_configs"] = [{"to": settings.alert_email_to, "send_resolved": resolved,
                                   "headers": {"Subject": '{{ template "vrm.title" . }}'},
                                   "text": '{{ template "vrm.text" . }}'}]
    return found


def render_alertmanager(settings: Settings, template: Path) -> str:
    """alertmanager.yml with `.env`'s routes and timings. It holds their secrets (Slack's
    URL, the SMTP password): written 0600 in the 0700 state dir, never into the repo."""
    import yaml

    from vrm_tui.core import yamlfile

    config: dict[str, Any] = yamlfile.load(source(settings, "alertmanager.yml"), BadInput)
    config["templates"] = [str(template)]
    route = config.setdefault("route", {})
    route.update(group_wait=settings.alert_group_wait,
                 group_interval=settings.alert_group_interval,
                 repeat_interval=settings.alert_repeat_interval)
    if settings.alert_email_to:
        config.setdefault("global", {}).update(
            smtp_smarthost=settings.alert_smtp_smarthost, smtp_from=settings.alert_smtp_from,
            smtp_require_tls=settings.alert_smtp_require_tls,
            **({"smtp_auth_username": settings.alert_smtp_username,
                "smtp_auth_password": settings.alert_smtp_password}
               if settings.alert_smtp_username else {}))
    for receiver in config.get("receivers", []):
        if receiver.get("name") in ("default", "rollout"):
            receiver.update(_receiver_configs(settings, receiver["name"] == "default"))
    return yaml.safe_dump(config, sort_keys=False)


def write_alertmanager_config(settings: Settings, folder: Path) -> Path:
    """Render alertmanager.yml (0600) and its template into `folder`; the config's path."""
    from vrm_tui.system.files import write_atomic

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    template = folder / "alertmanager.tmpl"
    write_atomic(template, source(settings, "alertmanager.tmpl").read_text(), sync=False)
    config = folder / "alertmanager.yml"
    write_atomic(config, render_alertmanager(settings, template), sync=False, mode=0o600)
    return config


def check_alertmanager(settings: Settings) -> None:
    """`amtool check-config` on the config these settings render (skipped where amtool is
    not installed: neither is Alertmanager). A refused config is bad input naming the
    setting whose route Alertmanager refused: each route is checked alone to find it."""
    amtool = shutil.which("amtool") or shutil.which("amtool", path="/usr/bin:/usr/local/bin")
    if amtool is None:
        return
    problem = _amtool(amtool, settings)
    if problem is None:
        return
    bare = replace(settings, alert_webhook_urls=(), alert_slack_webhook_url="",
                   alert_email_to="")
    alone: dict[str, Settings | None] = {
        "ALERT_WEBHOOK_URLS": replace(bare, alert_webhook_urls=settings.alert_webhook_urls)
        if settings.alert_webhook_urls else None,
        "ALERT_SLACK_WEBHOOK_URL": replace(
            bare, alert_slack_webhook_url=settings.alert_slack_webhook_url)
        if settings.alert_slack_webhook_url else None,
        "ALERT_EMAIL_TO": replace(bare, alert_email_to=settings.alert_email_to)
        if settings.alert_email_to else None}
    for name, only in alone.items():
        own = _amtool(amtool, only) if only is not None else None
        if own is not None:
            raise SettingsError(f"{name}: Alertmanager refuses the route: {own}")
    where = source(settings, "alertmanager.yml")
    raise SettingsError(f"{where}: Alertmanager refuses the config: {problem}")


def _amtool(amtool: str, settings: Settings) -> str | None:
    """amtool's complaint about the rendered config, or None when it accepts it."""
    with tempfile.TemporaryDirectory(prefix="vrm-amtool-") as folder:
        config = write_alertmanager_config(settings, Path(folder))
        try:
            done = subprocess.run([amtool, "check-config", str(config)], capture_output=True,
                                  text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"amtool check-config did not run: {exc}"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines()
             if "FAILED" in line or "error" in line.lower()]
    text = lines[0] if lines else (done.stdout + done.stderr).strip()
    return text.split("FAILED:", 1)[-1].strip().removeprefix("amtool: error: ")


def alertmanager_command(settings: Settings, config: Path, data: Path) -> list[str]:
    """Its API on loopback only. No cluster outside a fleet (by default it binds its gossip
    port on every interface); in a fleet it gossips on the advertised address with the peers
    the fleet's hosts had at start (`cluster_peers`). A host that joins later lists the running ones
    and gossip tells them; a peer that is away is retried (--cluster.reconnect-timeout,
    6 h) and re-joined by address every refresh (15 s)."""
    command = [binary(services.ALERTMANAGER) or "prometheus-alertmanager",
               f"--config.file={config}", f"--storage.path={data}"]
    command.append(f"--web.listen-address={hostport(LOOPBACK, settings.alertmanager_port)}")
    own = fleet_address(settings)
    if own is None:
        return [*command, "--cluster.listen-address="]
    gossip = hostport(own, settings.alertmanager_cluster_port)
    return [*command, f"--cluster.listen-address={gossip}",
            f"--cluster.advertise-address={gossip}",
            f"--cluster.peer-timeout={settings.alertmanager_peer_timeout}",
            *(f"--cluster.peer={peer}" for peer in cluster_peers(settings))]
