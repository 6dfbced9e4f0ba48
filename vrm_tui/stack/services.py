"""The seed's service names, the same in every runtime (`vrm logs vision-proxy`)."""

PROXY = "vision-proxy"
RUST = "vision-manager-rust"
TYPESCRIPT = "vision-manager-typescript"
PROMETHEUS = "prometheus"
GRAFANA = "grafana"

BACKENDS = {RUST: "rust", TYPESCRIPT: "typescript"}
CORE = (PROXY, RUST, TYPESCRIPT)
ALL = (PROXY, RUST, TYPESCRIPT, PROMETHEUS, GRAFANA)
