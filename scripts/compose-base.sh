#!/usr/bin/env bash
# Prepare this host for the compose stack without a container registry:
#   - start a Docker engine when none answers (root only; the flags this kind of machine
#     needs: no iptables, no default bridge, the vfs storage driver),
#   - build the base image vrm-base:bookworm-lua from Debian with debootstrap (python3, nginx
#     with its Lua module (zero-reload weight changes), prometheus, the nginx exporter and
#     alertmanager inside; about a minute),
#   - fill docker/.wheelhouse with the Python wheels of the rehearsal backend and vrm-control.
# Then: VRM_RUNTIME=compose VRM_BASE_IMAGE=vrm-base:bookworm-lua VRM_BUILD_NETWORK=none vrm up
# Prints one line per step; exits 1 with the reason when the engine cannot run here.
#   VRM_DOCKERD_PIDFILE: where to write the pid of a dockerd this script starts.
#   --mirror: print the Debian mirror debootstrap would use (read from this host's apt
#   configuration, VRM_APT_DIR or /etc/apt) and exit.
#   --engine: only start the engine when none answers (as above), then exit.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$VRM_ROOT"
BASE_IMAGE="${VRM_BASE_IMAGE:-vrm-base:bookworm-lua}"
SUITE=bookworm
APT_DIR="${VRM_APT_DIR:-/etc/apt}"

# apt_mirror prints the first URI this host's apt configuration uses for the $SUITE suite
# (one-line sources.list entries, then deb822 *.sources `URIs:`), so the project names no
# mirror of its own: the host's choice (a local mirror, a proxy, a snapshot) is the one used.
apt_mirror() {
    local files=() f
    [ -f "$APT_DIR/sources.list" ] && files+=("$APT_DIR/sources.list")
    for f in "$APT_DIR"/sources.list.d/*.list "$APT_DIR"/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -eq 0 ] && return 0
    awk -v suite="$SUITE" '
        function usable(uri) { return uri ~ /^(https?|file):/ }
        function has(list, word,   n, parts, i) {
            n = split(list, parts, /[ \t]+/)
            for (i = 1; i <= n; i++) if (parts[i] == word) return 1
            return 0
        }
        function flush() {
            if (uris != "" && has(types, "deb") && has(suites, suite) && tolower(enabled) != "no") {
                split(uris, u, /[ \t]+/)
                if (usable(u[1])) { print u[1]; found = 1; exit }
            }
            types = uris = suites = enabled = ""
        }
        FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
        /^[ \t]*#/ { next }
        !deb822 {
            line = $0; sub(/\[[^]]*\]/, "", line); n = split(line, w, /[ \t]+/)
            i = (w[1] == "") ? 2 : 1
            if (w[i] == "deb" && usable(w[i + 1]) && w[i + 2] == suite) {
                print w[i + 1]; found = 1; exit
            }
            next
        }
        /^[ \t]*$/ { flush(); next }
        { key = tolower($1); value = $0; sub(/^[^:]*:[ \t]*/, "", value) }
        key == "types:" { types = value }
        key == "uris:" { uris = value }
        key == "suites:" { suites = value }
        key == "enabled:" { enabled = value }
        END { if (!found) flush() }
    ' "${files[@]}"
}

# debian_mirror: apt_mirror, or exit 1 saying where it looked.
debian_mirror() {
    local mirror
    mirror="$(apt_mirror)"
    [ -n "$mirror" ] || { say "no apt source for Debian $SUITE in $APT_DIR (sources.list," \
        "sources.list.d/*.list or *.sources): debootstrap needs a mirror to build $BASE_IMAGE"
        exit 1; }
    echo "$mirror"
}

if [ "${1:-}" = "--mirror" ]; then
    mirror="$(debian_mirror)"
    echo "$mirror"
    exit 0
fi

# start_engine: a Docker engine, started here when none answers (root only), with the flags
# this kind of machine needs; its pid goes to VRM_DOCKERD_PIDFILE when set.
start_engine() {
    docker info >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ]; then say "no Docker engine answers, and only root may start one"; exit 1; fi
    log="${VRM_DOCKERD_LOG:-/tmp/vrm-dockerd.log}"
    say "starting dockerd (log: $log)"
    # The engine outlives this script and keeps none of its caller's descriptors: under
    # `flock /tmp/vrm-docker.lock` it would otherwise hold the lock for its whole life.
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
        done
        exec nohup dockerd --iptables=false --bridge=none --storage-driver=vfs >"$log" 2>&1
    ) &
    # Whoever asked (scripts/test.sh) learns the pid of the engine started here, to stop it.
    [ -n "${VRM_DOCKERD_PIDFILE:-}" ] && echo $! > "$VRM_DOCKERD_PIDFILE"
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { say "dockerd did not start: $(tail -3 "$log")"; exit 1; }
}

if [ "${1:-}" = "--engine" ]; then  # the engine alone (tests restart it as a reboot would)
    start_engine
    exit 0
fi

ensure_debs docker.io:dockerd docker-compose:docker-compose debootstrap:debootstrap
ensure_venv
start_engine
say "docker engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

# What the base holds (the images' Dockerfiles install a missing piece only with a network,
# and vrm builds them with none): these packages, and the commands checked for them.
PACKAGES=python3,python3-venv,nginx-light,libnginx-mod-http-lua,ca-certificates,curl,prometheus,prometheus-nginx-exporter,prometheus-alertmanager
COMMANDS="python3 nginx curl prometheus prometheus-nginx-exporter prometheus-alertmanager"

# A base from an older build of this script is built again: one whose / only root may enter
# (it imported mktemp's 0700 folder; vrm's containers run as non-root users), or one that
# lacks a command (Alertmanager came later). One container answers both, as a non-root user.
build=
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    build=1
elif ! missing="$(docker run --rm --network none --user 65534:65534 "$BASE_IMAGE" /bin/sh -c \
        'for c in '"$COMMANDS"'; do command -v "$c" >/dev/null || printf "%s " "$c"; done' \
        2>/dev/null)"; then
    say "rebuilding $BASE_IMAGE: non-root users cannot enter its root folder"
    build=1
elif [ -n "$missing" ]; then
    say "rebuilding $BASE_IMAGE: it lacks ${missing% }"
    build=1
fi
if [ -n "$build" ]; then
    mirror="$(debian_mirror)"
    root="$(mktemp -d)"
    chmod 0755 "$root"  # the image's / (mktemp makes it 0700)
    say "building $BASE_IMAGE with debootstrap from $mirror in $root"
    as_root debootstrap --variant=minbase \
        --include="$PACKAGES" \
        "$SUITE" "$root" "$mirror" >/tmp/vrm-debootstrap.log 2>&1 \
        || { say "debootstrap failed: $(tail -3 /tmp/vrm-debootstrap.log)"; exit 1; }
    tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$root"
fi
say "base image: $BASE_IMAGE"

# the rehearsal backend's few, and vrm's own for vrm-control (as pyproject.toml lists them)
"$VENV/bin/python" -m pip wheel -q -w docker/.wheelhouse aiohttp prometheus-client PyYAML \
    -r <("$VENV/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
say "wheelhouse: $(ls docker/.wheelhouse/*.whl | wc -l) wheels in docker/.wheelhouse"
