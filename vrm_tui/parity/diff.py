"""Diffy-style comparison of three answers to one request: primary, secondary and candidate.

Bodies are flattened into leaves keyed by concrete path (`$.detections[2].label`) and compared
element by element; each leaf also carries its reporting path (`$.detections[*].label`), under
which outcomes are counted. A difference between primary and candidate at a concrete path where
primary and secondary (two known-good answers) also differ is noise, not a mismatch. Pure
functions: the comparator calls `compare` for every sample, so it must stay well above 1,000
comparisons a second.

A value's kind (a clock, an id, a duration, a counter) is read from its shape and its key here
(`value_kind`), and `kind_accepts` holds the rule rust's value must meet for that kind; which
differences those rules settle is decided per value in `results`, which sees every sample.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal

__all__ = [
    "MISSING",
    "ArrayOrder",
    "Comparison",
    "Difference",
    "Kind",
    "Outcome",
    "Response",
    "Rules",
    "Tolerance",
    "child_path",
    "compare",
    "kind_accepts",
    "make_rules",
    "normalize_path",
    "value_kind",
]


class Outcome(enum.IntEnum):
    """How one path compared; higher is worse, so a path's outcome is the max over its leaves."""

    EQUAL = 0
    NOISE = 1
    WITHIN_TOLERANCE = 2
    MISMATCH = 3


class Kind(enum.StrEnum):
    """What a value is, when it is a value typescript itself does not repeat exactly."""

    TIMESTAMP = "timestamp"  # the answer's own clock: within a tolerance of the request's time
    ID = "id"  # a request or task id: any id will do
    DURATION = "duration"  # how long something took: any number >= 0
    COUNTER = "counter"  # the process's own count or uptime: >= 0 and never going back


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


TIMESTAMP_TOLERANCE_S = 5.0


@dataclass(frozen=True)
class Rules:
    """What to compare and how, for one endpoint. Build it with `make_rules`."""

    ignore: frozenset[str] = frozenset()
    ignore_keys: frozenset[str] = frozenset()
    tolerances: Mapping[str, Tolerance] = field(default_factory=dict)
    arrays: Mapping[str, ArrayOrder] = field(default_factory=dict)
    headers: tuple[str, ...] = ("content-type",)
    kinds: Mapping[str, Kind] = field(default_factory=dict)  # named by the deployment
    timestamp_tolerance: float = TIMESTAMP_TOLERANCE_S


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
               headers: Iterable[str] = ("content-type",),
               kinds: Mapping[str, Kind] | None = None,
               timestamp_tolerance: float = TIMESTAMP_TOLERANCE_S) -> Rules:
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
        kinds={normalize_path(p): k for p, k in (kinds or {}).items()},
        timestamp_tolerance=timestamp_tolerance,
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

    def record(path: str, report: str, outcome: Outcome, p: Any, s: Any, c: Any) -> None:
        """One difference, and the worst outcome at its report path so far."""
        differences.append(Difference(path, report, outcome, p, s, c))
        if outcome > outcomes.get(report, Outcome.EQUAL) or report not in outcomes:
            outcomes[report] = outcome

    def leaf(path: str, report: str, p: Any, s: Any, c: Any, tol: Tolerance | None) -> Outcome:
        if _same(p, c):
            outcomes.setdefault(report, Outcome.EQUAL)
            return Outcome.EQUAL
        if not _same(p, s):
            outcome = Outcome.NOISE
        elif tol is not None and tol.accepts(p, c):
            outcome = Outcome.WITHIN_TOLERANCE
        else:
            outcome = Outcome.MISMATCH
        record(path, report, outcome, p, s, c)
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
            record(path, report, outcome, p, s, c)
        else:
            leaf(path, report, p, s, c, tolerances.get(report))
    for path, (report, c) in c_flat.items():
        if path not in p_flat:
            s_entry = s_flat.get(path)
            leaf(path, report, MISSING, MISSING if s_entry is None else s_entry[1], c, None)
    return Comparison(outcomes, tuple(differences))


# -- kinds ------------------------------------------------------------------------------------

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?",
                  re.IGNORECASE)
_HTTP_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}",
                   re.IGNORECASE)
_HEX_ID = re.compile(r"(?:[A-Za-z]{1,12}[_:-])?[0-9a-f]{16,}", re.IGNORECASE)
_TOKEN_ID = re.compile(r"[A-Za-z]{1,12}[_:-](?=[A-Za-z0-9]*\d)[A-Za-z0-9]{6,}")
# Key names (lower case, `_` for camelCase humps). A count of things in the answer
# (`detections`, `count`) is no counter: only a process's own running totals are.
_COUNTER_KEY = re.compile(r"(^|_)(uptime|seq|sequence|counter)(_|$)|_total$|(^|_)total_|"
                          r"(^|_)(served|processed|handled)$")
_DURATION_KEY = re.compile(r"(^|_)(duration|latency|elapsed|took)(_|$)|"
                           r"(^|_)(processing|response|inference|compute)_?time(_|$)|"
                           r"(^|_)time_?taken(_|$)|_(ms|us|ns)$")
_EPOCH_SCALES = ((1e9, 1e10, 1.0), (1e12, 1e13, 1e-3), (1e15, 1e16, 1e-6))


@functools.lru_cache(maxsize=8192)
def _number_kind(path: str) -> Kind | None:
    """A number's kind by its key (paths repeat in every sample: cached)."""
    key = _key_name(path)
    if _COUNTER_KEY.search(key):
        return Kind.COUNTER
    if _DURATION_KEY.search(key):
        return Kind.DURATION
    return None


def _key_name(path: str) -> str:
    """The last member name in a concrete path (`$.a[2].served_at` -> `served_at`), snake_case."""
    end = len(path)
    while end and path[end - 1] == "]" and path.rfind("[", 0, end) != -1 \
            and path[path.rfind("[", 0, end) + 1:end - 1].isdigit():
        end = path.rfind("[", 0, end)
    head = path[:end]
    if head.endswith('"]'):
        start = head.rfind('["')
        name = json.loads(head[start + 1:-1]) if start != -1 else ""
    else:
        name = head.rsplit(".", 1)[-1] if "." in head else ""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def epoch_seconds(value: Any) -> float | None:
    """A timestamp's time in seconds since the epoch, or None when the value is no timestamp.

    ISO 8601 (`2026-01-05T10:00:00.123Z`, an offset, or none: then UTC), an HTTP date, or a
    number of seconds, milliseconds or microseconds since 1970 in a plausible range."""
    kind = type(value)
    if kind is str:
        text = value.strip()
        if len(text) < 16 or len(text) > 40:
            return None
        if _ISO.fullmatch(text):
            try:
                moment = datetime.fromisoformat(text.replace("z", "Z"))
            except ValueError:
                return None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.timestamp()
        if _HTTP_DATE.fullmatch(text):
            return parsedate_to_datetime(text).timestamp()
        return None
    if kind in (int, float) and math.isfinite(value):
        for low, high, scale in _EPOCH_SCALES:
            if low <= value < high:
                return float(value) * scale
    return None


def _is_id(value: Any) -> bool:
    return type(value) is str and bool(_UUID.fullmatch(value) or _HEX_ID.fullmatch(value)
                                       or _TOKEN_ID.fullmatch(value))


def value_kind(path: str, value: Any, window: tuple[float, float] | None = None,
               tolerance: float = TIMESTAMP_TOLERANCE_S) -> Kind | None:
    """The kind of typescript's value at a concrete path, by its shape and its key, or None.

    A timestamp only when it lies within `tolerance` of `window` (when the request ran): a
    date that is part of the answer (a model's release date) is no clock. Durations and
    counters are numbers under a key that says so (`processing_ms`, `uptime_s`,
    `tasks_total`). Ids by shape alone (a uuid, 16+ hex digits, `req_8f3a2b`); the caller
    settles an id only where typescript has changed it, so a stable id stays exact."""
    if window is not None:
        moment = epoch_seconds(value)
        if moment is not None and window[0] - tolerance <= moment <= window[1] + tolerance:
            return Kind.TIMESTAMP
    if _is_number(value):
        return _number_kind(path)
    return Kind.ID if _is_id(value) else None


def kind_accepts(kind: Kind, primary: Any, candidate: Any,
                 window: tuple[float, float] | None = None,
                 tolerance: float = TIMESTAMP_TOLERANCE_S) -> bool:
    """Whether rust's value meets the rule for typescript's value's kind.

    Its shape must match in every kind: a timestamp must be one, within `tolerance` of when
    the request ran; an id a string of an id's shape; a duration or counter a number >= 0
    (a counter's going back is judged where its history is kept)."""
    if kind is Kind.TIMESTAMP:
        moment = epoch_seconds(candidate)
        if moment is None or _is_number(primary) != _is_number(candidate):
            return False
        if window is None:
            return abs(moment - (epoch_seconds(primary) or 0.0)) <= tolerance
        return window[0] - tolerance <= moment <= window[1] + tolerance
    if kind is Kind.ID:
        return type(candidate) is type(primary) and (type(candidate) is not str
                                                     or _is_id(candidate))
    return (_is_number(candidate) and _is_number(primary) and math.isfinite(candidate)
            and candidate >= 0)


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
