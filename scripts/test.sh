#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, .venv, a Docker engine and the compose
# base image where this host can run one) and run the whole suite.
# Extra arguments go to pytest. Exits with pytest's status.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bootstrap
cd "$VRM_ROOT"
if [ -z "${VRM_SKIP_COMPOSE:-}" ]; then
    bash scripts/compose-base.sh \
        || say "COMPOSE: no Docker engine here; tests/compose will be skipped (see above)"
fi
exec "$VENV/bin/python" -m pytest "$@"
