#!/usr/bin/env bash
# Prepare this host for the compose stack without a container registry:
#   - start a Docker engine when none answers (root only; the flags this kind of machine
#     needs: no iptables, no default bridge, the vfs storage driver),
#   - build the base image vrm-base:bookworm-lua from Debian with debootstrap (python3, nginx
#     with its Lua module (zero-reload weight changes),
#     prometheus and the nginx exporter inside; about a minute),
#   - fill docker/.wheelhouse with the rehearsal backend's Python wheels.
# Then: VRM_RUNTIME=compose VRM_BASE_IMAGE=vrm-base:bookworm-lua VRM_BUILD_NETWORK=none vrm up
# Prints one line per step; exits 1 with the reason when the engine cannot run here.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$VRM_ROOT"
BASE_IMAGE="${VRM_BASE_IMAGE:-vrm-base:bookworm-lua}"

ensure_debs docker.io:dockerd docker-compose:docker-compose debootstrap:debootstrap
ensure_venv

if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then say "no Docker engine answers, and only root may start one"; exit 1; fi
    say "starting dockerd (log: /tmp/vrm-dockerd.log)"
    nohup dockerd --iptables=false --bridge=none --storage-driver=vfs \
        >/tmp/vrm-dockerd.log 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
    docker info >/dev/null 2>&1 || { say "dockerd did not start: $(tail -3 /tmp/vrm-dockerd.log)"; exit 1; }
fi
say "docker engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    root="$(mktemp -d)"
    say "building $BASE_IMAGE with debootstrap in $root"
    as_root debootstrap --variant=minbase \
        --include=python3,python3-venv,nginx-light,libnginx-mod-http-lua,ca-certificates,curl,prometheus,prometheus-nginx-exporter \
        bookworm "$root" http://deb.debian.org/debian >/tmp/vrm-debootstrap.log 2>&1 \
        || { say "debootstrap failed: $(tail -3 /tmp/vrm-debootstrap.log)"; exit 1; }
    tar -C "$root" -c . | docker import - "$BASE_IMAGE" >/dev/null
    as_root rm -rf "$root"
fi
say "base image: $BASE_IMAGE"

"$VENV/bin/python" -m pip wheel -q -w docker/.wheelhouse aiohttp prometheus-client PyYAML
say "wheelhouse: $(ls docker/.wheelhouse/*.whl | wc -l) wheels in docker/.wheelhouse"
