#!/usr/bin/env bash
# Set up everything the tests need (Debian packages, .venv) and run the whole suite.
# Extra arguments go to pytest. Exits with pytest's status.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bootstrap
cd "$VRM_ROOT"
exec "$VENV/bin/python" -m pytest "$@"
