#!/usr/bin/env bash
# Run the benchmarks under tests/perf and print their tables. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bootstrap
cd "$VRM_ROOT"
exec "$VENV/bin/python" -m pytest tests/perf -p no:cacheprovider -q -s "$@"
