"""Prometheus for a runtime: `monitoring/prometheus.yml` rendered with this stack's addresses.

The checked-in file is valid as it stands (compose service names), so `promtool check config`
runs on it; a runtime rewrites only the targets, the rules path and nothing else. A
deployment's own `monitoring/` next to `.env` wins over vrm's, like `nginx/nginx.conf`.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from vrm_tui.core import services
from vrm_tui.settings import Settings
from vrm_tui.traffic.nginx import REPO_ROOT

MONITORING = REPO_ROOT / "monitoring"
INSTALL_HINT = {
    services.PROMETHEUS: "sudo apt-get install -y prometheus",
    services.NGINX_EXPORTER: "sudo apt-get install -y prometheus-nginx-exporter",
}
BINARY = {services.PROMETHEUS: "prometheus", services.NGINX_EXPORTER: "prometheus-nginx-exporter"}


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

    config: dict[str, Any] = yaml.safe_load(source(settings, "prometheus.yml").read_text())
    for job in config.get("scrape_configs", []):
        if job.get("job_name") == "parity":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{settings.parity_port}"],
                                      "labels": {"service": services.PARITY}}] if parity else []
    address = {
        services.RUST: settings.rust_address,
        services.TYPESCRIPT: settings.ts_address,
        services.PROXY: f"127.0.0.1:{settings.nginx_exporter_port}",
        services.PROMETHEUS: f"127.0.0.1:{settings.prometheus_port}",
    }
    for job in config.get("scrape_configs", []):
        for group in job.get("static_configs", []):
            service = (group.get("labels") or {}).get("service")
            if service in address:
                group["targets"] = [address[service]]
    config["rule_files"] = [str(rules)]
    return yaml.safe_dump(config, sort_keys=False)


def prometheus_command(settings: Settings, config: Path, data: Path) -> list[str]:
    return [binary(services.PROMETHEUS) or "prometheus", f"--config.file={config}",
            f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{settings.prometheus_port}"]
    # No --web.enable-lifecycle: its /-/quit lets any local user stop monitoring; vrm
    # reloads Prometheus with SIGHUP instead.


def exporter_command(settings: Settings) -> list[str]:
    return [binary(services.NGINX_EXPORTER) or "prometheus-nginx-exporter",
            f"-nginx.scrape-uri=http://127.0.0.1:{settings.proxy_status_port}/nginx_status",
            f"-web.listen-address=127.0.0.1:{settings.nginx_exporter_port}"]
