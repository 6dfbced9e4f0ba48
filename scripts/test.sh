#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, .venv, a Docker engine and the compose
# base image where this host can run one) and run the whole suite.
# Extra arguments go to pytest. Exits with pytest's status. A Docker engine this script
# started is stopped when the suite ends; one that was already running is left alone.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bootstrap
cd "$VRM_ROOT"
# Two pytest-xdist workers (VRM_TEST_WORKERS; 1 runs the suite in one process): most tests
# wait on real servers, so two take ~40% off the time on two cores. A module stays on one
# worker and the compose tests together on one (tests/conftest.py groups them); each worker
# picks ports from its own range. Snapshot updates run in one process.
workers="${VRM_TEST_WORKERS:-2}"
case "$workers" in
    ''|*[!0-9]*) say "VRM_TEST_WORKERS=$workers: expected a number of workers (1: one process)"
                 exit 2 ;;
esac
parallel=()
case " $* " in *" --snapshot-update "*) workers=1 ;; esac
[ "$workers" -gt 1 ] && parallel=(-n "$workers" --dist loadgroup)
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
VRM_DOCKERD_PIDFILE="$pidfile" "$VENV/bin/python" -m pytest "${parallel[@]}" "$@" || status=$?
exit "$status"
