#!/usr/bin/env bash
# The seed's validate.sh, backed by `vrm validate`:
#   ./scripts/validate.sh                        full production validation
#   ./scripts/validate.sh --host localhost:3000  custom host
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$VRM_ROOT"
vrm validate "$@"
