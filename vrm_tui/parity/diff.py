"""Diffy-style comparison of three answers to one request: primary, secondary and candidate.

Bodies are flattened into leaves keyed by concrete path (`$.detections[2].label`) and compared
element by element; each leaf also carries its reporting path (`$.detections[*].label`), under
which outcomes are counted. A difference between primary and candidate at a concrete path where
primary and secondary (two known-good answers) also differ is noise, not a mismatch. Pure
functions: the comparator calls `compare` for every sample, so it must stay well above 1,000
comparisons a second.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "MISSING",
    "ArrayOrder",
    "Comparison",
    "Difference",
    "Outcome",
    "Response",
    "Rules",
    "Tolerance",
    "child_path",
    "compare",
    "make_rules",
    "normalize_path",
]


class Outcome(enum.IntEnum):
    """How one path compared; higher is worse, so a path's outcome is the max over its leaves."""

    EQUAL = 0
    NOISE = 1
    WITHIN_TOLERANCE = 2
    MISMATCH = 3


class _Marker:
    """A sentinel leaf that equals only itself (never a JSON value)."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


MISSING: Any = _Marker("<missing>")
EMPTY_OBJECT: Any = _Marker("{}")
EMPTY_ARRAY: Any = _Marker("[]")
_NOT_JSON: Any = _Marker("<not json>")


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Numbers within `abs` of each other, or within `rel` of the larger magnitude, are accepted."""

    abs: float = 0.0
    rel: float = 0.0

    def accepts(self, a: Any, b: Any) -> bool:
        if not (_is_number(a) and _is_number(b)):
            return False
        gap = math.fabs(a - b)
        return gap <= self.abs or gap <= self.rel * max(math.fabs(a), math.fabs(b))


@dataclass(frozen=True, slots=True)
class ArrayOrder:
    """How an array is lined up before element-wise comparison.

    `ordered` compares by index (order is part of the answer); `set` sorts elements by their
    canonical JSON (for exact-valued elements); `sort_by` sorts objects by one key's value (use it
    for elements whose numbers jitter, which a canonical-JSON sort would misalign).
    """

    kind: Literal["ordered", "set", "sort_by"] = "ordered"
    key: str | None = None

    def arrange(self, items: list[Any]) -> list[Any]:
        if self.kind == "set":
            return sorted(items, key=_canonical)
        if self.kind == "sort_by":
            return sorted(items, key=functools.partial(_sort_key, self.key))
        return items


@dataclass(frozen=True)
class Rules:
    """What to compare and how, for one endpoint. Build it with `make_rules`."""

    ignore: frozenset[str] = frozenset()
    ignore_keys: frozenset[str] = frozenset()
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    arrays: Mapping[str, ArrayOrder] = field(default_factory=dict)
    headers: tuple[str, ...] = ("content-type",)


@dataclass(frozen=True, slots=True)
class Response:
    """One backend's answer; header names are lower-cased on the way in."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", {k.lower(): v for k, v in self.headers.items()})


@dataclass(frozen=True, slots=True)
class Difference:
    """One leaf where candidate differs from primary (outcome is never EQUAL)."""

    path: str
    report_path: str
    outcome: Outcome
    primary: Any
    secondary: Any
    candidate: Any


@dataclass(frozen=True, slots=True)
class Comparison:
    """Every compared reporting path with its worst outcome, and the leaves that differed."""

    outcomes: Mapping[str, Outcome]
    differences: tuple[Difference, ...]

    @property
    def mismatched(self) -> bool:
        return any(o is Outcome.MISMATCH for o in self.outcomes.values())

    def paths(self, outcome: Outcome) -> list[str]:
        return sorted(p for p, o in self.outcomes.items() if o is outcome)


# -- paths ------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_SEGMENT = re.compile(r'\.([A-Za-z_][A-Za-z0-9_-]*)|\[\*\]|\[("(?:[^"\\]|\\.)*")\]')


@functools.lru_cache(maxsize=8192)
def _segment(key: str) -> str:
    return "." + key if _NAME.fullmatch(key) else "[" + json.dumps(key) + "]"


def child_path(parent: str, key: str) -> str:
    """The path of `parent`'s member `key`: `.name`, or `["odd key"]` when it is not a name."""
    return parent + _segment(key)


def normalize_path(text: str) -> str:
    """Check a configured path and give its canonical form; ValueError says what is wrong.

    Accepted: `status`, `header:NAME`, `$` followed by `.name`, `["any key"]` and `[*]` segments,
    and `$..name` (the key `name` at any depth; only for ignore and redact).
    """
    text = text.strip()
    if text == "status":
        return text
    if text.startswith("header:"):
        name = text[len("header:"):].strip().lower()
        if not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", name):
            raise ValueError(f"{text!r}: not a header name")
        return "header:" + name
    if text.startswith("$.."):
        if not _NAME.fullmatch(text[3:]):
            raise ValueError(f"{text!r}: expected $..name")
        return text
    if not text.startswith("$"):
        raise ValueError(f"{text!r}: expected status, header:NAME, or a path starting with $")
    out, pos = "$", 1
    while pos < len(text):
        match = _SEGMENT.match(text, pos)
        if not match:
            raise ValueError(f"{text!r}: cannot read the path at {text[pos:]!r}")
        if match.group(1) is not None:
            out += "." + match.group(1)
        elif match.group(2) is not None:
            out += _segment(json.loads(match.group(2)))
        else:
            out += "[*]"
        pos = match.end()
    return out


def make_rules(*, ignore: Iterable[str] = (), tolerances: Mapping[str, Tolerance] | None = None,
               arrays: Mapping[str, ArrayOrder] | None = None,
               headers: Iterable[str] = ("content-type",)) -> Rules:
    """Rules from configured paths (normalized here; ValueError names a bad one)."""
    plain, keys = set(), set()
    for path in ignore:
        norm = normalize_path(path)
        if norm.startswith("$.."):
            keys.add(norm[3:])
        else:
            plain.add(norm)
    return Rules(
        ignore=frozenset(plain), ignore_keys=frozenset(keys),
        tolerances={normalize_path(p): t for p, t in (tolerances or {}).items()},
        arrays={normalize_path(p): a for p, a in (arrays or {}).items()},
        headers=tuple(dict.fromkeys(h.lower() for h in headers)),
    )


# -- comparison -------------------------------------------------------------------------------

def compare(primary: Response, secondary: Response, candidate: Response,
            rules: Rules) -> Comparison:
    """Compare candidate with primary, using secondary to tell noise from mismatch.

    Status and the configured headers are compared as the paths `status` and `header:NAME`. When
    the candidate's status is a mismatch the bodies are not compared: an error body against a
    result body would report every path, burying the one difference that matters.
    Bodies that are not all JSON are compared as bytes at `$`.
    """
    outcomes: dict[str, Outcome] = {}
    differences: list[Difference] = []

    def leaf(path: str, report: str, p: Any, s: Any, c: Any, tol: Tolerance | None) -> Outcome:
        if _same(p, c):
            outcome = Outcome.EQUAL
        else:
            if not _same(p, s):
                outcome = Outcome.NOISE
            elif tol is not None and tol.accepts(p, c):
                outcome = Outcome.WITHIN_TOLERANCE
            else:
                outcome = Outcome.MISMATCH
            differences.append(Difference(path, report, outcome, p, s, c))
        if outcome > outcomes.get(report, Outcome.EQUAL) or report not in outcomes:
            outcomes[report] = outcome
        return outcome

    status = Outcome.EQUAL
    if "status" not in rules.ignore:
        status = leaf("status", "status", primary.status, secondary.status, candidate.status,
                      None)
    for name in rules.headers:
        path = "header:" + name
        if path not in rules.ignore:
            leaf(path, path, primary.headers.get(name, MISSING),
                 secondary.headers.get(name, MISSING), candidate.headers.get(name, MISSING), None)
    if status is Outcome.MISMATCH or "$" in rules.ignore:
        return Comparison(outcomes, tuple(differences))

    if primary.body == candidate.body:
        p_json = _decode(primary.body)
        if p_json is _NOT_JSON:
            outcomes["$"] = Outcome.EQUAL
        else:
            for report, _ in _flatten_value(p_json, rules).values():
                outcomes.setdefault(report, Outcome.EQUAL)
        return Comparison(outcomes, tuple(differences))

    p_json, s_json, c_json = (_decode(r.body) for r in (primary, secondary, candidate))
    if p_json is _NOT_JSON or s_json is _NOT_JSON or c_json is _NOT_JSON:
        leaf("$", "$", primary.body, secondary.body, candidate.body, None)
        return Comparison(outcomes, tuple(differences))

    p_flat, s_flat, c_flat = (_flatten_value(v, rules) for v in (p_json, s_json, c_json))
    tolerances = rules.tolerances
    for path, (report, p) in p_flat.items():
        c_entry = c_flat.get(path)
        c = MISSING if c_entry is None else c_entry[1]
        if p is c or (type(p) is type(c) and p == c):  # the common case, without a call
            if report not in outcomes:
                outcomes[report] = Outcome.EQUAL
            continue
        s_entry = s_flat.get(path)
        s = MISSING if s_entry is None else s_entry[1]
        if type(p) is float and type(c) is float and type(s) is float:
            # jittered floats, the most frequent difference: classified here, without calls
            if p != s:
                outcome = Outcome.NOISE
            else:
                tol = tolerances.get(report)
                gap = p - c if p > c else c - p
                if tol is not None and (gap <= tol.abs or gap <= tol.rel * max(-p, p, -c, c)):
                    outcome = Outcome.WITHIN_TOLERANCE
                else:
                    outcome = Outcome.MISMATCH
            differences.append(Difference(path, report, outcome, p, s, c))
            if outcome > outcomes.get(report, Outcome.EQUAL) or report not in outcomes:
                outcomes[report] = outcome
        else:
            leaf(path, report, p, s, c, tolerances.get(report))
    for path, (report, c) in c_flat.items():
        if path not in p_flat:
            s_entry = s_flat.get(path)
            leaf(path, report, MISSING, MISSING if s_entry is None else s_entry[1], c, None)
    return Comparison(outcomes, tuple(differences))


def _decode(body: bytes) -> Any:
    if not body:
        return _NOT_JSON
    try:
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return _NOT_JSON


def _flatten_value(value: Any, rules: Rules) -> dict[str, tuple[str, Any]]:
    out: dict[str, tuple[str, Any]] = {}
    _flatten(value, "$", "$", rules, out)
    return out


def _flatten(value: Any, report: str, path: str, rules: Rules,
             out: dict[str, tuple[str, Any]]) -> None:
    # Leaves are stored inline rather than by a recursive call: most nodes are leaves, and the
    # call is most of the cost of a comparison.
    kind = type(value)
    if kind is dict:
        if not value:
            out[path] = (report, EMPTY_OBJECT)
            return
        ignore, ignore_keys = rules.ignore, rules.ignore_keys
        for key, item in value.items():
            segment = _segment(key)
            child = report + segment
            if child in ignore or key in ignore_keys:
                continue
            if type(item) in _CONTAINERS:
                _flatten(item, child, path + segment, rules, out)
            else:
                out[path + segment] = (child, item)
    elif kind is list:
        if not value:
            out[path] = (report, EMPTY_ARRAY)
            return
        order = rules.arrays.get(report)
        if order is not None:
            value = order.arrange(value)
        child = report + "[*]"
        if child in rules.ignore:
            return
        for index, item in enumerate(value):
            if type(item) in _CONTAINERS:
                _flatten(item, child, f"{path}[{index}]", rules, out)
            else:
                out[f"{path}[{index}]"] = (child, item)
    else:
        out[path] = (report, value)


_CONTAINERS = (dict, list)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 1 equals 1.0 (a float rendering is no answer change); true never equals 1."""
    if a is b:
        return True
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and bool(a == b)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _sort_key(key: str | None, item: Any) -> tuple[int, Any]:
    """Order mixed JSON values without comparing a number with a string."""
    value = item.get(key, MISSING) if type(item) is dict and key is not None else MISSING
    if type(value) in (int, float):
        return (0, value)
    if type(value) is str:
        return (1, value)
    if value is MISSING:
        return (3, _canonical(item))
    return (2, _canonical(value))
