#!/usr/bin/env bash
# Set up and open vrm on a local stack with rehearsal backends.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bootstrap
cd "$VRM_ROOT"
[ -f .env ] || vrm setup
exec "$VENV/bin/vrm" demo "$@"
