"""The seed's service names, the same in every runtime (`vrm logs vision-proxy`)."""

from vrm_tui.core.backend import Backend

PROXY = "vision-proxy"
RUST = "vision-manager-rust"
TYPESCRIPT = "vision-manager-typescript"
PROMETHEUS = "prometheus"
GRAFANA = "grafana"
NGINX_EXPORTER = "nginx-exporter"
ALERTMANAGER = "alertmanager"
MIGRATION_GUARD = "migration-guard"  # vrm's own: runs a migration no terminal owns
PARITY = "parity-comparator"  # vrm's own: compares mirrored requests (vrm parity on)
FLEET_AGENT = "fleet-agent"  # vrm's own: follows the fleet's desired split (VRM_FLEET)
CONTROL = "vrm-control"  # vrm's own, compose: the comparator and a standby migration guard

BACKENDS = {RUST: Backend.RUST, TYPESCRIPT: Backend.TYPESCRIPT}
SERVICE_OF = {backend: service for service, backend in BACKENDS.items()}
CORE = (PROXY, RUST, TYPESCRIPT)
MONITORING = (NGINX_EXPORTER, ALERTMANAGER, PROMETHEUS)  # Prometheus last: it sends to it
MANAGED = (*CORE, PARITY, *MONITORING)  # what the local runtime can start, in start order
ALL = (PROXY, RUST, TYPESCRIPT, PROMETHEUS, GRAFANA, NGINX_EXPORTER, PARITY, ALERTMANAGER)

# Where each service answers "are you alive", relative to its base URL.
HEALTH_PATH = {RUST: "/health", TYPESCRIPT: "/health", PROMETHEUS: "/-/ready",
               NGINX_EXPORTER: "/metrics", PARITY: "/health", ALERTMANAGER: "/-/ready",
               CONTROL: "/health"}
