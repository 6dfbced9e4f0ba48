# Shared by the scripts: find the repo, install what vrm needs, run vrm from .venv.
# shellcheck shell=bash

VRM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$VRM_ROOT/.venv"

say() { printf '%s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        say "need root for: $*"; return 1; fi
}

# ensure_debs PACKAGE:COMMAND ... installs each package whose command is missing.
ensure_debs() {
    local wanted=() spec pkg cmd
    for spec in "$@"; do
        pkg="${spec%%:*}"; cmd="${spec##*:}"
        command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || [ -x "/usr/bin/$cmd" ] \
            || wanted+=("$pkg")
    done
    [ ${#wanted[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${wanted[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${wanted[@]}" >/dev/null
}

# ensure_venv creates .venv and installs vrm with its test extras, again when pyproject changes.
ensure_venv() {
    local python stamp want
    python="$(command -v python3.11 || command -v python3)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        say "vrm needs Python >= 3.11; found $("$python" --version)"; return 1; }
    [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
    stamp="$VENV/.vrm-installed"
    want="$(sha256sum "$VRM_ROOT/pyproject.toml" | cut -d' ' -f1) compat"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing vrm and its dependencies into .venv"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        # compat: a plain path in a .pth file. The default editable finder costs every
        # `vrm` ~15 ms at start (a `vrm rollback` has 150 ms in all); lenient if refused.
        "$VENV/bin/python" -m pip install -q -e "$VRM_ROOT[test]" \
            --config-settings editable_mode=compat 2>/dev/null \
            || "$VENV/bin/python" -m pip install -q -e "$VRM_ROOT[test]"
        echo "$want" > "$stamp"
    fi
    # Bytecode written now, not on first use: with PYTHONDONTWRITEBYTECODE (or a read-only
    # checkout) every `vrm` would compile its modules again, ~50 ms before a rollback acts.
    "$VENV/bin/python" -m compileall -q "$VRM_ROOT/vrm_tui" >/dev/null \
        || say "could not precompile vrm_tui (read-only checkout?): vrm works, starts slower"
}

# ensure_lua installs Debian's Lua module for nginx (zero-reload weight changes).
ensure_lua() {
    [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] && return 0
    say "installing Debian packages: libnginx-mod-http-lua"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libnginx-mod-http-lua >/dev/null
}

bootstrap() {
    # etcd-server: the fleet's store (vrm fleet, vrm agent; its tests start one on loopback).
    # nodejs: the foreign backend pair the suite runs (tests/foreign_backends).
    ensure_debs nginx:nginx apache2-utils:ab wrk:wrk prometheus:prometheus \
        prometheus-nginx-exporter:prometheus-nginx-exporter prometheus-alertmanager:amtool \
        etcd-server:etcd nodejs:node
    ensure_lua
    ensure_venv
}

vrm() {
    if [ ! -x "$VENV/bin/vrm" ]; then
        say "vrm is not installed yet: run scripts/setup.sh first"
        return 1
    fi
    "$VENV/bin/vrm" "$@"
}
