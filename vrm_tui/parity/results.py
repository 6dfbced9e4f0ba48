"""Parity results: counts per endpoint and path, mismatch rates with intervals, and examples.

Counts say how often rust disagrees; examples say how (a request with its three answers). Both
are written to the state dir as JSON, atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vrm_tui.parity.diff import (
    EMPTY_ARRAY,
    EMPTY_OBJECT,
    MISSING,
    Comparison,
    Difference,
    Outcome,
    Response,
    child_path,
)
from vrm_tui.system.files import write_atomic

__all__ = [
    "REDACTED",
    "VOLATILE_AFTER",
    "VOLATILE_SHARE",
    "Counts",
    "Example",
    "ExampleStore",
    "ParityResults",
    "Redactor",
    "wilson_interval",
    "write_json_atomic",
]

REDACTED = "<redacted>"
Z95 = 1.959963984540054
# A value (one leaf, `$.emb[3]`) is volatile, a clock, an id, a timing, once the two typescript
# answers have differed there in this share of at least VOLATILE_AFTER compared samples.
VOLATILE_AFTER = 5
VOLATILE_SHARE = 0.9
MAX_NOISY_LEAVES = 10_000  # per endpoint: leaves keyed by odd JSON keys must not grow it forever
_MARKERS = (MISSING, EMPTY_OBJECT, EMPTY_ARRAY)


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion: honest at 0 and at small counts, unlike p +- z*se."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    z2n = z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(p * (1 - p) / trials + z2n / (4 * trials)) / (1 + z2n)
    low = 0.0 if successes <= 0 else max(0.0, centre - half)
    high = 1.0 if successes >= trials else min(1.0, centre + half)
    return (low, high)


@dataclass
class Counts:
    """Outcomes at one path (or, per endpoint, whole requests by their worst path)."""

    compared: int = 0
    equal: int = 0
    noise: int = 0
    within_tolerance: int = 0
    mismatched: int = 0
    # of the noise, mismatches on a volatile value in a sample where the two typescript answers
    # agreed by chance (what a per-sample diff would have reported)
    settled: int = 0

    def add(self, outcome: Outcome) -> None:
        self.compared += 1
        if outcome is Outcome.EQUAL:
            self.equal += 1
        elif outcome is Outcome.NOISE:
            self.noise += 1
        elif outcome is Outcome.WITHIN_TOLERANCE:
            self.within_tolerance += 1
        else:
            self.mismatched += 1

    @property
    def mismatch_rate(self) -> float:
        return self.mismatched / self.compared if self.compared else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The mismatch rate's Wilson 95% interval."""
        return wilson_interval(self.mismatched, self.compared)

    @property
    def raw_difference_rate(self) -> float:
        """Any difference at all, noise included (what a naive diff would report)."""
        return (self.compared - self.equal) / self.compared if self.compared else 0.0


@dataclass
class ParityResults:
    """Counters for everything compared since parity was switched on."""

    endpoints: dict[str, Counts] = field(default_factory=dict)
    paths: dict[str, dict[str, Counts]] = field(default_factory=dict)
    dropped: int = 0  # mirrored while the comparator's queue was full
    sampled: int = 0  # mirrored requests received (dropped and refused included)
    failed: int = 0  # a shadow call got no answer (refused, timed out): nothing compared
    refused: int = 0  # a method/route parity.yaml does not allow: never replayed
    since: float = 0.0  # when counting began (parity switched on), epoch seconds
    # per endpoint and leaf (`$.emb[3]`): samples in which the two typescript answers differed
    noisy: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self, endpoint: str, comparison: Comparison) -> Comparison:
        """Count one comparison, and give it back as counted (what examples and alerts see).

        On a volatile value a difference is noise even in a sample where the two typescript
        answers happened to agree: whole milliseconds collide often, and a collision says
        nothing about rust. Diffy judged noise per field over many samples for the same reason.
        Judged per leaf, never per `[*]` path: a neighbour of a volatile element is not volatile.
        """
        per_path = self.paths.setdefault(endpoint, {})
        noisy = self.noisy.setdefault(endpoint, {})
        settled = _settled(comparison, per_path, noisy)
        worst = max(settled.outcomes.values(), default=Outcome.EQUAL)
        request = self.endpoints.setdefault(endpoint, Counts())
        request.add(worst)
        request.settled += comparison.mismatched and worst is Outcome.NOISE
        for path, outcome in settled.outcomes.items():
            counts = per_path.get(path)
            if counts is None:
                counts = per_path[path] = Counts()
            counts.add(outcome)
            counts.settled += (outcome is Outcome.NOISE
                               and comparison.outcomes[path] is Outcome.MISMATCH)
        for diff in comparison.differences:
            if diff.outcome is Outcome.NOISE:
                seen = noisy.get(diff.path)
                if seen is not None:
                    noisy[diff.path] = seen + 1
                elif len(noisy) < MAX_NOISY_LEAVES:
                    noisy[diff.path] = 1
        return settled

    def total(self) -> Counts:
        out = Counts()
        for counts in self.endpoints.values():
            for name in ("compared", "equal", "noise", "within_tolerance", "mismatched",
                         "settled"):
                setattr(out, name, getattr(out, name) + getattr(counts, name))
        return out

    def top_paths(self, limit: int = 10) -> list[tuple[str, str, Counts]]:
        """(endpoint, path, counts) with mismatches, the surest highest rate first.

        Ranked by the interval's lower bound: one mismatch in one sample (100%) is weaker
        evidence than 400 in 1,000, and must not push it out of a pane's top three.
        """
        rows = [(e, p, c) for e, paths in self.paths.items() for p, c in paths.items()
                if c.mismatched]
        rows.sort(key=lambda row: (-row[2].interval[0], -row[2].mismatch_rate, row[0], row[1]))
        return rows[:limit]

    def to_dict(self) -> dict[str, Any]:
        return {"endpoints": {e: asdict(c) for e, c in self.endpoints.items()},
                "paths": {e: {p: asdict(c) for p, c in paths.items()}
                          for e, paths in self.paths.items()},
                "dropped": self.dropped, "sampled": self.sampled, "failed": self.failed,
                "refused": self.refused, "since": self.since, "noisy": self.noisy}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ParityResults:
        return cls(endpoints={e: Counts(**c) for e, c in data.get("endpoints", {}).items()},
                   paths={e: {p: Counts(**c) for p, c in paths.items()}
                          for e, paths in data.get("paths", {}).items()},
                   dropped=int(data.get("dropped", 0)), sampled=int(data.get("sampled", 0)),
                   failed=int(data.get("failed", 0)), refused=int(data.get("refused", 0)),
                   since=float(data.get("since", 0.0)),
                   noisy={e: {p: int(n) for p, n in leaves.items()}
                          for e, leaves in data.get("noisy", {}).items()})

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> ParityResults:
        """Read saved results; a missing file is no results yet. Bad files raise ValueError."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        try:
            return cls.from_dict(data)
        except (TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"{path}: not a parity results file ({exc})") from None


def _kind(value: Any) -> type:
    return float if type(value) is int else type(value)  # an int and a float are both numbers


def _volatile(diff: Difference, per_path: Mapping[str, Counts], noisy: Mapping[str, int]) -> bool:
    """Whether a mismatch is typescript agreeing with itself by chance on a volatile value.

    Never when rust's answer has another shape: a missing or extra value, or another type.
    """
    p, c = diff.primary, diff.candidate
    if any(p is m or c is m for m in _MARKERS) or _kind(p) is not _kind(c):
        return False
    counts = per_path.get(diff.report_path)
    return (counts is not None and counts.compared >= VOLATILE_AFTER
            and noisy.get(diff.path, 0) >= VOLATILE_SHARE * counts.compared)


def _settled(comparison: Comparison, per_path: Mapping[str, Counts],
             noisy: Mapping[str, int]) -> Comparison:
    """The comparison with mismatches on volatile values counted as noise."""
    if not noisy or not comparison.mismatched:
        return comparison
    changed: set[str] = set()
    differences = []
    for diff in comparison.differences:
        if diff.outcome is Outcome.MISMATCH and _volatile(diff, per_path, noisy):
            diff = replace(diff, outcome=Outcome.NOISE)
            changed.add(diff.report_path)
        differences.append(diff)
    if not changed:
        return comparison
    outcomes = dict(comparison.outcomes)
    for path in changed:
        outcomes[path] = max((d.outcome for d in differences if d.report_path == path),
                             default=Outcome.NOISE)
    return Comparison(outcomes, tuple(differences))


class Redactor:
    """Replaces configured headers and body paths (`header:NAME`, `$.a.b`, `$..key`)."""

    def __init__(self, redact: Iterable[str]) -> None:
        items = set(redact)
        self.headers = {p[len("header:"):] for p in items if p.startswith("header:")}
        self.keys = {p[3:] for p in items if p.startswith("$..")}
        self.paths = {p for p in items if p.startswith("$") and not p.startswith("$..")}

    def covers(self, report_path: str) -> bool:
        """Whether a reporting path lies in a redacted subtree."""
        for path in self.paths:
            if report_path == path or report_path.startswith((path + ".", path + "[")):
                return True
        return any(f".{key}" in report_path and _has_segment(report_path, key)
                   for key in self.keys)

    def header_map(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {k: REDACTED if k.lower() in self.headers else v for k, v in headers.items()}

    def body(self, value: Any, report: str = "$") -> Any:
        if report in self.paths:
            return REDACTED
        if isinstance(value, dict):
            return {k: REDACTED if k in self.keys else self.body(v, child_path(report, k))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.body(v, report + "[*]") for v in value]
        return value


def _has_segment(path: str, key: str) -> bool:
    needle = "." + key
    start = path.find(needle)
    while start != -1:
        end = start + len(needle)
        if end == len(path) or path[end] in ".[":
            return True
        start = path.find(needle, end)
    return False


def _encode_body(body: bytes, redactor: Redactor) -> dict[str, Any]:
    """A body as JSON (redacted), text, or base64, whichever it can be."""
    if body:
        try:
            return {"json": redactor.body(json.loads(body))}
        except ValueError:
            pass
    try:
        return {"text": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(body).decode("ascii")}


def _encode_value(value: Any) -> Any:
    if value is EMPTY_OBJECT:
        return {}
    if value is EMPTY_ARRAY:
        return []
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@dataclass(frozen=True)
class Example:
    """A compared request, its three answers and where they differed, redacted; JSON-ready."""

    endpoint: str
    time: float
    request: dict[str, Any]
    primary: dict[str, Any]
    secondary: dict[str, Any]
    candidate: dict[str, Any]
    mismatched: list[str]
    differences: list[dict[str, Any]]  # the worst first (mismatches), then in body order
    left_out: int = 0  # differences beyond ExampleStore.MAX_DIFFERENCES, the least severe


class ExampleStore:
    """Up to `capacity` mismatch examples, oldest first; everything stored is redacted first.

    When full, an example goes whose every mismatched path is shown by another one; of those,
    the oldest of the path with the most examples. So a rare mismatch keeps an example beside
    a frequent one, alone or together with it (a plain ring of the newest would lose it).
    """

    MAX_DIFFERENCES = 20

    def __init__(self, capacity: int = 50, redact: Iterable[str] = ()) -> None:
        self.capacity = capacity
        self.redactor = Redactor(redact)
        self._kept: list[Example] = []

    def __len__(self) -> int:
        return len(self._kept)

    def __iter__(self) -> Iterator[Example]:
        return iter(self._kept)

    def add(self, endpoint: str, method: str, path: str, headers: Mapping[str, str],
            body: bytes, primary: Response, secondary: Response, candidate: Response,
            comparison: Comparison, now: float | None = None) -> Example:
        r = self.redactor

        def answer(response: Response) -> dict[str, Any]:
            return {"status": response.status, "headers": r.header_map(response.headers),
                    "body": _encode_body(response.body, r)}

        worst_first = sorted(comparison.differences, key=lambda d: -d.outcome)
        differences = []
        for diff in worst_first[:self.MAX_DIFFERENCES]:
            entry: dict[str, Any] = {"path": diff.path, "report_path": diff.report_path,
                                     "outcome": diff.outcome.name.lower()}
            hidden = r.covers(diff.report_path) or (
                diff.report_path.startswith("header:")
                and diff.report_path[len("header:"):] in r.headers)
            for side in ("primary", "secondary", "candidate"):
                value = getattr(diff, side)
                if value is not MISSING:  # absent key: the side had no such path
                    entry[side] = REDACTED if hidden else _encode_value(value)
            differences.append(entry)
        example = Example(
            endpoint=endpoint, time=time.time() if now is None else now,
            request={"method": method, "path": path, "headers": r.header_map(headers),
                     "body": _encode_body(body, r)},
            primary=answer(primary), secondary=answer(secondary), candidate=answer(candidate),
            mismatched=comparison.paths(Outcome.MISMATCH), differences=differences,
            left_out=max(0, len(worst_first) - self.MAX_DIFFERENCES))
        self._keep(example)
        return example

    def _keep(self, example: Example) -> None:
        if self.capacity <= 0:
            return
        self._kept.append(example)
        if len(self._kept) > self.capacity:
            shown = Counter(p for e in self._kept for p in _shown(e))
            spare = [n for n, e in enumerate(self._kept) if all(shown[p] > 1 for p in _shown(e))]
            candidates = spare or range(len(self._kept))
            groups = Counter(_group(self._kept[n]) for n in candidates)
            largest = max(groups.values())
            del self._kept[next(n for n in candidates
                                if groups[_group(self._kept[n])] == largest)]

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(e) for e in self._kept]

    def save(self, path: Path) -> None:
        write_json_atomic(path, {"capacity": self.capacity, "examples": self.to_list()})

    @classmethod
    def load(cls, path: Path, capacity: int | None = None,
             redact: Iterable[str] = ()) -> ExampleStore:
        """Read a saved store; a missing file is an empty store. Bad files raise ValueError."""
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(capacity if capacity is not None else 50, redact)
        try:
            store = cls(capacity if capacity is not None else int(data["capacity"]), redact)
            for item in data["examples"]:
                store._keep(Example(**item))
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a parity examples file ({exc})") from None
        return store


def _group(example: Example) -> tuple[str, str]:
    """Examples share the store by endpoint and first mismatched path."""
    return (example.endpoint, example.mismatched[0] if example.mismatched else "")


def _shown(example: Example) -> list[tuple[str, str]]:
    """The (endpoint, path) mismatches an example shows."""
    return [(example.endpoint, path) for path in example.mismatched or [""]]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON next to `path`, fsync it, then rename over `path`: readers see old or new."""
    write_atomic(path, json.dumps(data, separators=(",", ":")))
