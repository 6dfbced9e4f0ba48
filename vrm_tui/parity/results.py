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
    TIMESTAMP_TOLERANCE_S,
    Comparison,
    Difference,
    Kind,
    Outcome,
    Response,
    Rules,
    child_path,
    kind_accepts,
    value_kind,
)
from vrm_tui.system.files import write_atomic

__all__ = [
    "CHANCE_RATE",
    "REDACTED",
    "VARIES_ALPHA",
    "Counts",
    "Example",
    "ExampleStore",
    "ParityResults",
    "Redactor",
    "varies",
    "wilson_interval",
    "write_json_atomic",
]

REDACTED = "<redacted>"
Z95 = 1.959963984540054
# A value (one leaf, `$.emb[3]`) varies when the two typescript answers have differed there
# more often than a stable value would by chance (a glitch in CHANCE_RATE of samples), by a
# one-sided binomial test at VARIES_ALPHA. Whole-millisecond clocks and integer timings differ
# in most samples yet agree in many: any share beyond chance marks them, not only 90%.
CHANCE_RATE = 0.001
VARIES_ALPHA = 0.01
MAX_NOISY_LEAVES = 10_000  # per endpoint: leaves keyed by odd JSON keys must not grow it forever
COUNTER_HISTORY = 64  # rust's recent counter values per leaf, to see one go back
_MARKERS = (MISSING, EMPTY_OBJECT, EMPTY_ARRAY)


def varies(differed: int, samples: int, chance: float = CHANCE_RATE,
           alpha: float = VARIES_ALPHA) -> bool:
    """One-sided binomial test: did typescript differ from itself in `differed` of `samples`
    more often than a stable value would by chance? P(X >= differed | samples, chance) <= alpha.
    """
    if differed <= 0 or differed <= chance * samples:
        return False
    log_p, log_q = math.log(chance), math.log1p(-chance)
    lg = math.lgamma
    tail = 0.0
    for j in range(differed, samples + 1):
        term = math.exp(lg(samples + 1) - lg(j + 1) - lg(samples - j + 1)
                        + j * log_p + (samples - j) * log_q)
        tail += term
        if tail > alpha:
            return False
        if term <= tail * 1e-12:  # the rest adds nothing (or all underflows: tail ~ 0)
            break
    return True


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
    # per endpoint and leaf: rust's recent counter values, (sample's end, value); not saved
    _counters: dict[str, dict[str, list[tuple[float, float]]]] = field(
        default_factory=dict, repr=False, compare=False)

    def record(self, endpoint: str, comparison: Comparison, rules: Rules | None = None,
               window: tuple[float, float] | None = None) -> Comparison:
        """Count one comparison, and give it back as counted (what examples and alerts see).

        Where rust differs and the two typescript answers agreed, the difference is settled
        as noise when typescript's value is of a kind whose rule rust's value meets (see
        `_judge`), or varies beyond chance: whole milliseconds collide often, and a collision
        says nothing about rust. Diffy judged noise per field over many samples for the same
        reason. Judged per leaf, never per `[*]` path: a neighbour of a changing element is
        no noise. `window` is when the three calls ran (epoch seconds): a timestamp is the
        answer's own clock when it lies within it.
        """
        per_path = self.paths.setdefault(endpoint, {})
        noisy = self.noisy.setdefault(endpoint, {})
        settled = self._settled(endpoint, comparison, per_path, noisy, rules, window)
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

    def _settled(self, endpoint: str, comparison: Comparison, per_path: Mapping[str, Counts],
                 noisy: Mapping[str, int], rules: Rules | None,
                 window: tuple[float, float] | None) -> Comparison:
        """The comparison judged per value: mismatches its values' kinds or variation excuse
        become noise, and noise rust's value fails its kind's rule on becomes a mismatch."""
        changed: set[str] = set()
        differences = []
        for diff in comparison.differences:
            if diff.outcome is Outcome.MISMATCH:
                outcome = self._judge(endpoint, diff, per_path, noisy, rules, window)
            elif diff.outcome is Outcome.NOISE:
                outcome = self._judge_noise(endpoint, diff, rules, window)
            else:
                outcome = diff.outcome
            if outcome is not diff.outcome:
                diff = replace(diff, outcome=outcome)
                changed.add(diff.report_path)
            differences.append(diff)
        if not changed:
            return comparison
        outcomes = dict(comparison.outcomes)
        for path in changed:
            outcomes[path] = max(d.outcome for d in differences if d.report_path == path)
        return Comparison(outcomes, tuple(differences))

    def _judge_noise(self, endpoint: str, diff: Difference, rules: Rules | None,
                     window: tuple[float, float] | None) -> Outcome:
        """A difference the two typescript answers also had: noise, unless rust's value has
        no shape either of them had (missing, or another type) or breaks the rule of
        typescript's value's kind: a clock an hour off is wrong however much typescript's
        milliseconds differ."""
        p, s, c = diff.primary, diff.secondary, diff.candidate
        if c is MISSING and p is not MISSING and s is not MISSING:
            return Outcome.MISMATCH
        if _type(c) is not _type(p) and _type(c) is not _type(s):
            return Outcome.MISMATCH
        if p in _MARKERS or c in _MARKERS:
            return Outcome.NOISE
        tolerance = rules.timestamp_tolerance if rules is not None else TIMESTAMP_TOLERANCE_S
        kind = rules.kinds.get(diff.report_path) if rules is not None else None
        if kind is None:
            kind = value_kind(diff.path, p, window, tolerance)
        if kind is None:
            return Outcome.NOISE
        ok = kind_accepts(kind, p, c, window, tolerance)
        if ok and kind is Kind.COUNTER:
            ok = self._counter_holds(endpoint, diff.path, c, window)
        return Outcome.NOISE if ok else Outcome.MISMATCH

    def _judge(self, endpoint: str, diff: Difference, per_path: Mapping[str, Counts],
               noisy: Mapping[str, int], rules: Rules | None,
               window: tuple[float, float] | None) -> Outcome:
        """One mismatch where the two typescript answers agreed: noise or mismatch.

        Never noise when rust's answer has another shape: a missing or extra value, or
        another type. Then the value's kind decides, named in parity.yaml or read from its
        shape: a timestamp within the tolerance of when the request ran, an id that
        typescript has changed before, a duration or counter (>= 0; a counter never below
        what rust answered in a sample that ended before this one began). A value of no
        kind is noise when typescript has varied it beyond chance; otherwise it stays exact.
        """
        p, c = diff.primary, diff.candidate
        if any(p is m or c is m for m in _MARKERS) or _type(p) is not _type(c):
            return Outcome.MISMATCH
        tolerance = rules.timestamp_tolerance if rules is not None else TIMESTAMP_TOLERANCE_S
        differed = noisy.get(diff.path, 0)
        kind = rules.kinds.get(diff.report_path) if rules is not None else None
        if kind is None:
            kind = value_kind(diff.path, p, window, tolerance)
            if kind is Kind.ID and not differed:
                kind = None  # an id typescript repeats (a model's) is part of the answer
        if kind is not None:
            ok = kind_accepts(kind, p, c, window, tolerance)
            if ok and kind is Kind.COUNTER:
                ok = self._counter_holds(endpoint, diff.path, c, window)
            return Outcome.NOISE if ok else Outcome.MISMATCH
        counts = per_path.get(diff.report_path)
        if counts is not None and varies(differed, counts.compared):
            return Outcome.NOISE
        return Outcome.MISMATCH

    def _counter_holds(self, endpoint: str, leaf: str, value: float,
                       window: tuple[float, float] | None) -> bool:
        """Rust's counter is not below its value in any sample that ended before this began.

        Samples run concurrently and are counted as they finish, so only samples known to
        come earlier are compared (a reordered pair is no counter going back)."""
        if window is None:
            return True
        seen = self._counters.setdefault(endpoint, {})
        history = seen.get(leaf)
        if history is None:
            if len(seen) >= MAX_NOISY_LEAVES:
                return True
            history = seen[leaf] = []
        floor = max((v for end, v in history if end < window[0]), default=-math.inf)
        history.append((window[1], value))
        if len(history) > COUNTER_HISTORY:
            del history[0]
        return value >= floor

    def total(self) -> Counts:
        out = Counts()
        for counts in self.endpoints.values():
            for name in ("compared", "equal", "noise", "within_tolerance", "mismatched",
                         "settled"):
                setattr(out, name, getattr(out, name) + getattr(counts, name))
        return out

    def ranked_routes(self) -> list[tuple[str, Counts]]:
        """(route, counts of its requests), the surest highest mismatch rate first, as
        `top_paths` ranks; routes are what the parity gate judges, each on its own."""
        rows = list(self.endpoints.items())
        rows.sort(key=lambda row: (-row[1].interval[0], -row[1].mismatch_rate, row[0]))
        return rows

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


def _type(value: Any) -> type:
    return float if type(value) is int else type(value)  # an int and a float are both numbers


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
