#!/usr/bin/env bash
# The seed's benchmark.sh, backed by `vrm benchmark`:
#   ./scripts/benchmark.sh benchmark                   standard benchmark
#   ./scripts/benchmark.sh --requests 1000 benchmark   high-load test
#   ./scripts/benchmark.sh stress | compare | all | monitor
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$VRM_ROOT"
mode=benchmark
opts=()
while [ $# -gt 0 ]; do
    case "$1" in
        benchmark|stress|compare|all|monitor) mode="$1"; shift ;;
        --requests|--concurrency|--duration|--rate)
            [ $# -ge 2 ] || { say "$1 needs a value"; exit 2; }
            opts+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) opts+=("$1"); shift ;;
    esac
done
vrm benchmark "$mode" "${opts[@]}"
