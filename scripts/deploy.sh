#!/usr/bin/env bash
# The seed's deploy.sh, backed by vrm:
#   ./scripts/deploy.sh deploy                    deploy with the configured split
#   ./scripts/deploy.sh --rust-weight 25 deploy   deploy with 25% rust
#   ./scripts/deploy.sh migrate                   gradual migration
#   ./scripts/deploy.sh rollback                  emergency rollback
#   ./scripts/deploy.sh status                    current status
#   ./scripts/deploy.sh logs [service] [-f]       service logs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$VRM_ROOT"
args=()
command=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rust-weight) [ $# -ge 2 ] || { say "--rust-weight needs a value"; exit 2; }
                       args+=("$1" "$2"); shift 2 ;;
        --rust-weight=*) args+=("$1"); shift ;;
        deploy|migrate|rollback|status|logs|up|down|reload) command="$1"; shift; break ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) say "deploy.sh: unknown argument $1"; sed -n '2,9p' "$0" >&2; exit 2 ;;
    esac
done
[ -n "$command" ] || { sed -n '2,9p' "$0" >&2; exit 2; }
vrm "$command" "${args[@]}" "$@"
