#!/usr/bin/env bash
# Builder images for the production Dockerfiles on hosts without a registry (CI, air-gapped
# GPU hosts), made from Debian with debootstrap like compose-base.sh's base image:
#   vrm-rust-builder:bookworm  Debian's rustc and cargo: RUST_IMAGE for docker/Dockerfile
#   vrm-node:bookworm          Debian's nodejs and curl, with npm $NPM_VERSION from the npm
#                              registry this host's npm uses (Debian's npm depends on virtual
#                              packages debootstrap cannot resolve): NODE_IMAGE for
#                              docker/Dockerfile.typescript (its build and run stage)
# Both are bookworm, as the run stage's BASE_IMAGE is, so a binary built in one runs in the
# other. An image that exists is kept (about a minute each to build). The Debian mirror is the
# one this host's apt uses (scripts/compose-base.sh --mirror). Needs a Docker engine (start one
# with scripts/compose-base.sh) and root for debootstrap.
# Then: RUST_IMAGE=vrm-rust-builder:bookworm NODE_IMAGE=vrm-node:bookworm vrm up
# Prints one line per step; exits 1 with the reason when an image cannot be built here.
#   VRM_RUST_BUILDER_IMAGE, VRM_NODE_IMAGE: other names for the two images.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$VRM_ROOT"
RUST_BUILDER="${VRM_RUST_BUILDER_IMAGE:-vrm-rust-builder:bookworm}"
NODE_BUILDER="${VRM_NODE_IMAGE:-vrm-node:bookworm}"
NPM_VERSION=10.9.9  # npm's own tarball bundles its dependencies; it supports Debian's node 18

docker info >/dev/null 2>&1 \
    || { say "no Docker engine answers: scripts/compose-base.sh starts one"; exit 1; }

# debootstrap_image IMAGE PACKAGES [STEP]: a minimal bookworm root with PACKAGES (comma-
# separated, their dependencies resolved by debootstrap), then STEP ROOT (a function that adds
# to it), imported as IMAGE; kept when it exists.
debootstrap_image() {
    local image="$1" packages="$2" step="${3:-}" mirror root log
    if docker image inspect "$image" >/dev/null 2>&1; then
        say "builder image: $image (exists)"
        return 0
    fi
    ensure_debs debootstrap:debootstrap
    # the host's apt mirror as compose-base.sh reads it (its "none found" line names $image)
    mirror="$(VRM_BASE_IMAGE="$image" bash scripts/compose-base.sh --mirror)" || exit 1
    root="$(mktemp -d)"
    chmod 0755 "$root"  # the image's / (mktemp makes it 0700; the run stages are non-root)
    log="/tmp/vrm-debootstrap-${image//[^a-zA-Z0-9]/-}.log"
    say "building $image ($packages) with debootstrap from $mirror"
    if ! as_root debootstrap --variant=minbase --include="$packages" bookworm "$root" \
            "$mirror" >"$log" 2>&1; then
        cat "$root/debootstrap/debootstrap.log" >>"$log" 2>/dev/null || true
        as_root rm -rf "$root"
        say "debootstrap failed for $image (log: $log): $(grep -E '^E:| depends on ' "$log" \
            | tail -1 || tail -1 "$log")"
        exit 1
    fi
    as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    if [ -n "$step" ] && ! "$step" "$root"; then
        as_root rm -rf "$root"
        exit 1
    fi
    if ! tar -C "$root" -c . | docker import - "$image" >/dev/null; then
        as_root rm -rf "$root"
        say "docker import of $image failed"
        exit 1
    fi
    as_root rm -rf "$root"
    say "builder image: $image"
}

# add_npm ROOT: npm from the registry into ROOT/usr/lib/node_modules/npm, on PATH as npm/npx.
add_npm() {
    local root="$1" tarball folder
    command -v npm >/dev/null \
        || { say "npm is not installed on this host: it fetches npm $NPM_VERSION"; return 1; }
    folder="$(mktemp -d)"
    if ! tarball="$(cd "$folder" && npm pack --silent "npm@$NPM_VERSION" 2>/tmp/vrm-npm-pack.log)"; then
        say "npm pack npm@$NPM_VERSION failed: $(tail -1 /tmp/vrm-npm-pack.log)"
        rm -rf "$folder"
        return 1
    fi
    as_root mkdir -p "$root/usr/lib/node_modules/npm"
    as_root tar -C "$root/usr/lib/node_modules/npm" --strip-components=1 --no-same-owner \
        -xzf "$folder/$tarball"
    as_root ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/bin/npm"
    as_root ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/bin/npx"
    rm -rf "$folder"
    say "npm $NPM_VERSION added from $(npm config get registry)"
}

# libc6-dev: rustc needs a libc-dev, a virtual package debootstrap does not resolve
debootstrap_image "$RUST_BUILDER" rustc,cargo,libc6-dev
debootstrap_image "$NODE_BUILDER" nodejs,curl,ca-certificates add_npm
