"""What nginx mirrors to vrm's parity comparator: the sample, the comparator's port, the routes.

`vrm parity on|off` (the console) checks `configs/parity.yaml` and writes the sample and the
routes it allows to the state dir (`StateDir.parity_state`). Rendering reads only that small
JSON file, never the YAML, so a broken parity config can never stop a rollback from rendering:
an unreadable state file renders no mirroring at all.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vrm_tui.system.files import write_atomic

__all__ = ["MIRROR_LOCATION", "Mirror", "MirrorState", "render_http", "render_location",
           "render_mirror"]

MIRROR_LOCATION = "/vrm/_parity"
_ROUTE = re.compile(r"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/[^\s\"'\\;{}]*)")


@dataclass(frozen=True)
class MirrorState:
    """The operator's choice, persisted: `sample` None means "PARITY_SAMPLE decides"."""

    sample: float | None = None
    routes: tuple[str, ...] = ()
    since: float = 0.0
    by: str = ""

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps({**asdict(self), "routes": list(self.routes)}))

    @classmethod
    def load(cls, path: Path) -> MirrorState:
        """The saved state; missing or unreadable is the default (PARITY_SAMPLE, no routes)."""
        try:
            data: Any = json.loads(path.read_text())
            sample = data.get("sample")
            routes = tuple(r for r in data.get("routes", []) if _ROUTE.fullmatch(r))
            if sample is not None and not (isinstance(sample, int | float)
                                           and 0 <= sample <= 100):
                return cls()
            return cls(None if sample is None else float(sample), routes,
                       float(data.get("since", 0.0)), str(data.get("by", "")))
        except (OSError, ValueError, TypeError, AttributeError):
            return cls()

    def with_sample(self, sample: float | None, routes: tuple[str, ...], by: str) -> MirrorState:
        return MirrorState(sample, routes, time.time(), by)


@dataclass(frozen=True)
class Mirror:
    """What one nginx generation mirrors. Off (nothing rendered) unless sample > 0 and some
    route may be mirrored."""

    sample: float = 0.0
    port: int = 3011
    routes: tuple[str, ...] = field(default=())
    host: str = "127.0.0.1"  # where nginx reaches the comparator (compose: vrm-control)

    @property
    def on(self) -> bool:
        return self.sample > 0 and bool(self.routes)


def render_http(mirror: Mirror) -> str:
    """http-level blocks: who is sampled, which method and route may be mirrored, the
    comparator's upstream."""
    if not mirror.on:
        return "# parity mirroring is off (vrm parity on)"
    share = "*" if mirror.sample >= 100 else f"{mirror.sample:g}%"
    routes = "\n".join(f'        "~^{_regex(r)}(\\?.*)?$" 1;' for r in sorted(mirror.routes))
    return (
        f"# parity: {mirror.sample:g}% of balanced requests are mirrored to the comparator\n"
        '    split_clients "$request_id" $vrm_parity_sampled {\n'
        f'        {share} 1;\n'
        + ('        * "";\n' if share != "*" else "")
        + "    }\n"
        '    map "$request_method $request_uri" $vrm_parity_route {\n'
        '        default "";\n'
        f"{routes}\n"
        "    }\n"
        '    map "$vrm_parity_sampled$vrm_parity_route" $vrm_parity {\n'
        '        default "";\n'
        '        "11" 1;\n'
        "    }\n"
        "    upstream vrm_parity {\n"
        f"        server {mirror.host}:{mirror.port};\n"
        "        keepalive 16;\n"
        "    }"
    )


def _regex(route: str) -> str:
    method, path = route.split(" ", 1)
    return f"{method} {re.escape(path)}".replace('"', '\\"')


def render_mirror(mirror: Mirror) -> str:
    """The directives of a balanced location: nothing at all when mirroring is off."""
    if not mirror.on:
        return ""
    return f"mirror {MIRROR_LOCATION};\n            mirror_request_body on;"


def render_location(mirror: Mirror) -> str:
    """The internal location mirrors go to: it answers at once unless sampled and allowed;
    short timeouts, no retries, no access log, so the comparator can never slow a client."""
    if not mirror.on:
        return ""
    return (
        f"location = {MIRROR_LOCATION} {{\n"
        "            internal;\n"
        "            access_log off;\n"
        '            if ($vrm_parity = "") {\n'
        "                return 204;\n"
        "            }\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_set_header X-VRM-Method $request_method;\n"
        "            proxy_set_header X-Request-ID $request_id;\n"
        # nginx reads a keep-alive client's next request only once the mirror of this one
        # has finished: a hung comparator may cost that request these 100 ms, never more.
        "            proxy_connect_timeout 100ms;\n"
        "            proxy_send_timeout 100ms;\n"
        "            proxy_read_timeout 100ms;\n"
        "            proxy_next_upstream off;\n"
        "            proxy_pass http://vrm_parity/mirror$request_uri;\n"
        "        }"
    )
