"""The zero-reload split: weights in nginx shared memory, set over the loopback status
listener, written to the state dir first.

Debian's `libnginx-mod-http-lua` (the module ingress-nginx's balancer builds on) holds the
split in a shared dict every worker reads on each request, so a weight change takes effect
for every worker at once without a reload: no old workers to wait out, no idle keep-alive
connection closed under a client. The disk stays the truth: vrm writes the split file (and a
line in `splits.jsonl`) before it sets the split live, and nginx loads the file at every
start and reload. A split written but not set shows as PENDING in `vrm status`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

from vrm_tui.core.errors import ProxyUnreachable, SplitRefused
from vrm_tui.core.paths import REPO_ROOT, StateDir
from vrm_tui.core.split import Split
from vrm_tui.system import loophttp
from vrm_tui.system.files import write_atomic
from vrm_tui.traffic.nginx import LiveSplit
from vrm_tui.traffic.served import Served, parse_served

DEBIAN_MODULES = (Path("/usr/lib/nginx/modules/ndk_http_module.so"),
                  Path("/usr/lib/nginx/modules/ngx_http_lua_module.so"))
"""Debian's paths, NDK first (the Lua module links against it)."""
LUA_SOURCE = REPO_ROOT / "nginx" / "lua" / "vrm_split.lua"
INSTALL_HINT = "sudo apt-get install -y libnginx-mod-http-lua"


def modules_installed(modules: tuple[Path, ...] = DEBIAN_MODULES) -> bool:
    return all(module.is_file() for module in modules)


def live_split(paths: StateDir, modules: tuple[Path, ...] = DEBIAN_MODULES) -> LiveSplit:
    """The zero-reload paths of a state dir (named in StateDir)."""
    return LiveSplit(modules, paths.nginx_split, paths.nginx_lua, paths.nginx_secret)


def install_lua(live: LiveSplit) -> None:
    """Copy the Lua source next to the configs (a container sees the state dir, not vrm),
    and make sure the signing secret exists before any config that loads it is tested."""
    if live.secret_file is not None:
        ensure_secret(live.secret_file)
    live.lua_dir.mkdir(parents=True, exist_ok=True)
    target = live.lua_dir / LUA_SOURCE.name
    source = LUA_SOURCE.read_text()
    if not target.is_file() or target.read_text() != source:
        write_atomic(target, source, mode=0o644)


def ensure_secret(path: Path) -> None:
    """Create the key split changes are signed with: random, 0600, never rewritten (nginx
    reads it only at start and reload, so a new key would lock vrm out until then)."""
    if path.is_file():
        return
    import secrets  # only here: `vrm rollback` does not pay for importing it

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # never replaces a key another vrm created meanwhile
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def read_secret(path: Path | None) -> bytes:
    """The signing key, or b"" when there is none (nginx then refuses every change)."""
    if path is None:
        return b""
    try:
        return path.read_bytes().strip()
    except OSError:
        return b""


def sign(secret: bytes, body: bytes) -> str:
    """X-VRM-Signature: what nginx's Lua checks (base64 HMAC-SHA1 of the body)."""
    return base64.b64encode(hmac.new(secret, body, hashlib.sha1).digest()).decode()


def read_split(path: Path) -> tuple[int, Split] | None:
    """(generation, split) from the split file; None when absent or unreadable."""
    try:
        generation, rust = path.read_text().split()[:2]
        return int(generation), Split(int(rust))
    except (OSError, ValueError):
        return None


def write_split(path: Path, generation: int, split: Split, log: Path | None = None,
                who: str = "", action: str = "") -> None:
    """Write the split file atomically and durably (fsync of file and folder), and append
    the intent to `log`: a restart that loads it loads a recorded split."""
    if log is not None:
        line = json.dumps({"time": time.time(), "generation": generation, "rust": split.rust,
                           "operator": who, "action": action}) + "\n"
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    write_atomic(path, f"{generation} {split.rust}\n", mode=0o644, durable_dir=True)


VERIFIED_RECORD_BYTES = 40


def mark_verified(path: Path, generation: int, split: Split) -> bool:
    """Record that nginx was seen serving `generation`: what a start may safely serve.

    A fixed-size record written in place (no new blocks after the first write), so a full
    disk cannot stop it; False when it could not be written."""
    record = f"{generation} {split.rust}\n".encode().ljust(VERIFIED_RECORD_BYTES)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            os.pwrite(fd, record, 0)
            os.fdatasync(fd)
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


def post_split(host: str, port: int, generation: int, split: Split,
               timeout: float = 1.0, secret: bytes = b"",
               canary_ms: int | None = None) -> Served:
    """POST the split, signed with `secret`, to nginx's status listener; returns what the
    answering worker now serves. Raises ProxyUnreachable with nginx's reason (SplitRefused
    when nginx does not accept the signature)."""
    fields = {"generation": generation, "rust": split.rust}
    if canary_ms is not None:
        fields["canary_ms"] = canary_ms
    body = json.dumps(fields).encode()
    try:
        status, answer = loophttp.request(host, port, "POST", "/vrm/split", body=body,
                                          headers={"Content-Type": "application/json",
                                                   "X-VRM-Signature": sign(secret, body)},
                                          timeout=timeout)
    except OSError as exc:
        raise ProxyUnreachable(f"proxy at {host}:{port} did not take the split: {exc}") \
            from None
    if status == 403:
        raise SplitRefused(f"proxy at {host}:{port} refused the split: "
                           f"{answer[:200].decode(errors='replace').strip()} (nginx loaded "
                           "another key; a reload loads this one)")
    if status != 200:
        raise ProxyUnreachable(f"proxy at {host}:{port} refused the split (HTTP "
                               f"{status}): {answer[:200].decode(errors='replace')}")
    return parse_served(answer, f"{host}:{port}")
