"""Request corpora: named sets of real requests that benchmarks, validate and demo traffic send.

A corpus is a YAML file (`configs/requests/<name>.yaml`) listing requests with a method, a
path, headers, a body (inline JSON or text, or `body_file` relative to the corpus file: a
real image for a vision API) and a weight. vrm never invents a request a backend may not
serve: what it sends is what the deployment says its clients send.

It lives in core because every layer draws from it: the load engine, validate's speed check,
and the rehearsal package's demo traffic (which may import nothing of vrm but core).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from vrm_tui.core import yamlfile
from vrm_tui.core.errors import CorpusError
from vrm_tui.core.paths import CONFIGS
from vrm_tui.core.repeat import SafeToRepeat

REQUESTS_DIR = CONFIGS / "requests"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_SET = "default"  # the seed's own GET /api/v1/vision/metrics
REHEARSAL_SET = "rehearsal"  # plus the rehearsal backend's POST /process tasks
MAX_BODY_BYTES = 10 * 1024 * 1024
_FIELDS = {"name", "method", "path", "headers", "body", "body_file", "weight"}
_COMPUTED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


_Bad = Callable[[str, str], CorpusError]  # (field, what is wrong) -> the error to raise


@dataclass(frozen=True)
class Request:
    """One request of a corpus, ready to send to any base URL."""

    name: str
    method: str
    path: str  # with its query string
    headers: tuple[tuple[str, str], ...]
    body: bytes
    weight: float

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


@dataclass(frozen=True)
class Corpus:
    """A named, weighted set of requests; `source` is the file it came from."""

    name: str
    requests: tuple[Request, ...]
    source: Path | None = None

    def schedule(self, length: int = 100, seed: int = 0) -> list[Request]:
        """A fixed sequence of `length` requests in proportion to their weights (every request
        at least once), shuffled reproducibly: a load generator cycles through it instead of
        drawing random numbers on its hot path."""
        total = sum(r.weight for r in self.requests)
        slots: list[Request] = []
        for request in self.requests:
            slots += [request] * max(1, round(length * request.weight / total))
        random.Random(seed).shuffle(slots)
        return slots

    def heaviest(self) -> Request:
        """The most common request: what a one-request tool (ab) sends."""
        return max(self.requests, key=lambda r: r.weight)

    def check_repeatable(self, safe: SafeToRepeat) -> None:
        """Benchmarks, validate and demo traffic send each request many times: refuse a
        request the deployment has not declared safe to repeat (configs/routes.yaml)."""
        for request in self.requests:
            if not safe.allows(request.method, request.path):
                where = f"{self.source}: " if self.source else ""
                raise CorpusError(
                    f"{where}{request.name!r}: {request.method} {request.path.split('?')[0]} "
                    f"is not declared safe to repeat ({', '.join(safe.sources)}); a load "
                    "test would send it many times: declare it under safe_to_repeat if "
                    "that is safe, or leave it out")

    def describe(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"{self.name}{where}: {len(self.requests)} request(s)"


def load(path: Path) -> Corpus:
    """Read and check a corpus file; any problem is one CorpusError naming file and field."""
    data = yamlfile.load(path, CorpusError)
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected a mapping with a `requests` list")
    unknown = set(data) - {"name", "description", "requests"}
    if unknown:
        raise CorpusError(f"{path}: {sorted(unknown)[0]}: unknown field (name, description, "
                          "requests)")
    items = data.get("requests")
    if not isinstance(items, list) or not items:
        raise CorpusError(f"{path}: requests: expected a non-empty list")
    requests = tuple(_request(path, f"requests[{i}]", item) for i, item in enumerate(items))
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name.strip():
        raise CorpusError(f"{path}: name: expected text")
    return Corpus(name.strip(), requests, path)


def _request(path: Path, where: str, item: object) -> Request:
    def bad(field: str, want: str) -> CorpusError:
        return CorpusError(f"{path}: {where}.{field}: {want}")

    if not isinstance(item, dict):
        raise CorpusError(f"{path}: {where}: expected a mapping with method and path")
    unknown = set(item) - _FIELDS
    if unknown:
        raise bad(sorted(unknown)[0], f"unknown field (expected {', '.join(sorted(_FIELDS))})")
    method = str(item.get("method", "GET")).strip().upper()
    if method not in METHODS:
        raise bad("method", f"expected one of {', '.join(METHODS)}, got {item.get('method')!r}")
    target = item.get("path")
    if not isinstance(target, str) or not re.fullmatch(r"/[^\s]*", target):
        raise bad("path", f"expected an absolute path such as /api/v1/vision/metrics, "
                          f"got {target!r}")
    headers = _headers(item.get("headers", {}), bad)
    body, content_type = _body(path, item, bad)
    if content_type and not any(k.lower() == "content-type" for k, _ in headers):
        headers += (("Content-Type", content_type),)
    weight = item.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0 \
            or weight != weight or weight == float("inf"):
        raise bad("weight", f"expected a number above 0, got {weight!r}")
    name = item.get("name", f"{method} {target}")
    if not isinstance(name, str):
        raise bad("name", "expected text")
    return Request(name, method, target, headers, body, float(weight))


def _headers(raw: object, bad: _Bad) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise bad("headers", "expected a mapping of header names to values")
    found = []
    for key, value in raw.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", key):
            raise bad("headers", f"{key!r} is not a header name")
        if key.lower() in _COMPUTED_HEADERS:
            raise bad(f"headers.{key}", "set by the client itself; remove it")
        text = str(value)
        if isinstance(value, dict | list) or any(c in text for c in "\r\n"):
            raise bad(f"headers.{key}", "expected one line of text")
        found.append((key, text))
    return tuple(found)


def _body(path: Path, item: Mapping[str, object], bad: _Bad) -> tuple[bytes, str | None]:
    """The body's bytes and the Content-Type it implies (None: leave headers alone)."""
    if "body" in item and "body_file" in item:
        raise bad("body_file", "give body or body_file, not both")
    if "body_file" in item:
        name = item["body_file"]
        if not isinstance(name, str) or not name:
            raise bad("body_file", "expected a file name relative to the corpus file")
        file = (path.parent / name).resolve()
        try:
            size = file.stat().st_size
            if size > MAX_BODY_BYTES:
                raise bad("body_file", f"{file} is {size} bytes; at most {MAX_BODY_BYTES}")
            return file.read_bytes(), None
        except OSError as exc:
            raise bad("body_file", f"cannot read {file} ({exc.strerror or exc})") from None
    body = item.get("body")
    if body is None:
        return b"", None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    if isinstance(body, dict | list | int | float | bool):
        return json.dumps(body).encode(), "application/json"
    raise bad("body", "expected text, or JSON written as YAML")


def find(name_or_file: str, deploy_dir: Path) -> Path:
    """Where a corpus named by VRM_REQUESTS or --requests-file lives.

    A value with a `/` or a .yaml/.yml ending is a file (relative to the deployment);
    anything else a set name: the deployment's `configs/requests/<name>.yaml`, then vrm's."""
    if "/" in name_or_file or name_or_file.endswith((".yaml", ".yml")):
        file = Path(name_or_file).expanduser()
        return file if file.is_absolute() else deploy_dir / file
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name_or_file):
        raise CorpusError(f"VRM_REQUESTS={name_or_file!r}: expected a request set name or a "
                          "file")
    for folder in (deploy_dir / "configs" / "requests", REQUESTS_DIR):
        candidate = folder / f"{name_or_file}.yaml"
        if candidate.is_file():
            return candidate
    sets = sorted({p.stem for folder in (deploy_dir / "configs" / "requests", REQUESTS_DIR)
                   if folder.is_dir() for p in folder.glob("*.yaml")})
    raise CorpusError(f"VRM_REQUESTS={name_or_file!r}: no such request set (have "
                      f"{', '.join(sets) or 'none'})")


def configured(setting: str, deploy_dir: Path, rehearsal: bool) -> Corpus:
    """The corpus a deployment sends: VRM_REQUESTS, else the seed's GET metrics (with the
    rehearsal backend's process tasks when the rehearsal backends run)."""
    name = setting or (REHEARSAL_SET if rehearsal else DEFAULT_SET)
    return load(find(name, deploy_dir))


def dump(corpus: Corpus, comments: list[str] | None = None) -> str:
    """A corpus as YAML that `load` reads back (bodies inline as text when they decode)."""
    items = []
    for request in corpus.requests:
        item: dict[str, object] = {"method": request.method, "path": request.path}
        if request.headers:
            item["headers"] = dict(request.headers)
        if request.body:
            item["body"] = request.body.decode(errors="replace")
        if request.weight != 1:
            item["weight"] = int(request.weight) if request.weight.is_integer() \
                else request.weight
        items.append(item)
    head = "".join(f"# {line}\n" for line in comments or [])
    return head + yaml.safe_dump({"name": corpus.name, "requests": items}, sort_keys=False)
