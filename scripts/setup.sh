#!/usr/bin/env bash
# One-time preparation (the seed's setup.sh): install nginx and vrm, write .env, check the host.
#   ./scripts/setup.sh              full setup
#   ./scripts/setup.sh --skip-build accepted; the local runtime has nothing to build
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bootstrap
cd "$VRM_ROOT"
vrm setup "$@"
