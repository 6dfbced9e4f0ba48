"""`vrm capture`: the live traffic's requests, from nginx's access log, as a corpus to replay.

The access log holds each request's method and URI, never its headers or body (logging
bodies would put users' images and tokens on disk). So capture records what it can replay
honestly: requests without a body (GET, HEAD, DELETE, OPTIONS), weighted by how often they
came. Requests that carry a body (POST, PUT, PATCH) are listed, counted, as commented-out
entries for the operator to complete with `body:` or `body_file:`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from vrm_tui.core.corpus import Corpus, Request
from vrm_tui.system.logfiles import last_lines

PROXIED_ROUTES = ("balanced", "rust", "typescript")
BODY_METHODS = ("POST", "PUT", "PATCH")
REDACTED = "REDACTED"
SCAN_FACTOR = 20  # lines read per wanted request: the log also has health checks and probes


@dataclass(frozen=True)
class Capture:
    """What a capture found: the replayable corpus (None when there is nothing to replay)
    and the requests it could not replay, by (method, path)."""

    corpus: Corpus | None
    seen: int
    needs_body: Counter[tuple[str, str]]
    log: Path

    def header(self) -> list[str]:
        """Comment lines for the top of the corpus file: where it came from, what is missing."""
        lines = [f"Captured by `vrm capture` from {self.log}: the last {self.seen} proxied",
                 "requests, weighted by count. The access log holds no headers or bodies."]
        if self.needs_body:
            lines.append("Requests with a body are at the end, commented out: add `body:` or "
                         "`body_file:` and uncomment them to replay them.")
        return lines

    def trailer(self) -> str:
        """The requests that need a body, as commented-out list entries."""
        return "".join(f"# - {{method: {method}, path: {json.dumps(path)}, weight: {count}, "
                       "body_file: TODO}\n"
                       for (method, path), count in self.needs_body.most_common())


def _balanced_path(uri: str, route: str) -> str:
    """A pinned route (/api/v1/vision/rust/x) as the backend sees it (/api/v1/vision/x)."""
    if route in ("rust", "typescript"):
        return uri.replace(f"/api/v1/vision/{route}/", "/api/v1/vision/", 1)
    return uri


def _redact(uri: str, params: tuple[str, ...]) -> str:
    parts = urlsplit(uri)
    if not params or not parts.query:
        return uri
    wanted = {p.lower() for p in params}
    query = [(k, REDACTED if k.lower() in wanted else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return f"{parts.path}?{urlencode(query, safe='/:,')}"


def capture(log: Path, sample: int, redact: tuple[str, ...] = ()) -> Capture:
    """The last `sample` requests the proxy passed to a backend, grouped into a corpus."""
    found: list[tuple[str, str]] = []
    for line in reversed(last_lines(log, sample * SCAN_FACTOR)):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict) or entry.get("route") not in PROXIED_ROUTES:
            continue
        method = str(entry.get("method", "")).upper()
        uri = _redact(_balanced_path(str(entry.get("uri", "")), str(entry["route"])), redact)
        if method and uri.startswith("/"):
            found.append((method, uri))
        if len(found) >= sample:
            break
    counts = Counter(found)
    replayable = [Request(f"{m} {p}", m, p, (), b"", float(n))
                  for (m, p), n in counts.most_common() if m not in BODY_METHODS]
    needs_body = Counter({k: n for k, n in counts.items() if k[0] in BODY_METHODS})
    corpus = Corpus("captured", tuple(replayable)) if replayable else None
    return Capture(corpus, len(found), needs_body, log)
