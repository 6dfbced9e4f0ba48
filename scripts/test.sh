#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, .venv, a Docker engine and the compose
# base image where this host can run one) and run the whole suite.
# Extra arguments go to pytest. Exits with pytest's status. A Docker engine this script
# started is stopped when the suite ends; one that was already running is left alone.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bootstrap
cd "$VRM_ROOT"
pidfile="$(mktemp)"
stop_engine() {
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    rm -f "$pidfile"
    [ -n "$pid" ] || return 0
    say "stopping the Docker engine this run started (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    say "dockerd (pid $pid) did not stop within 60 s"
}
trap stop_engine EXIT
if [ -z "${VRM_SKIP_COMPOSE:-}" ]; then
    VRM_DOCKERD_PIDFILE="$pidfile" bash scripts/compose-base.sh \
        || say "COMPOSE: no Docker engine here; tests/compose will be skipped (see above)"
fi
status=0
# the engine's pid file: tests/compose/test_compose_dockerd.py restarts only an engine this
# run started (and writes the new engine's pid there, for stop_engine)
VRM_DOCKERD_PIDFILE="$pidfile" "$VENV/bin/python" -m pytest "$@" || status=$?
exit "$status"
