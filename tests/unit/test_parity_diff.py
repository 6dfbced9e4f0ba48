"""The three-way diff: noise from primary vs secondary, tolerances, array modes, pseudo-paths."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vrm_tui.parity.diff import (
    ArrayOrder,
    Kind,
    Outcome,
    Response,
    Tolerance,
    compare,
    epoch_seconds,
    kind_accepts,
    make_rules,
    normalize_path,
    value_kind,
)

JSON = {"Content-Type": "application/json"}


def r(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Response(status, {**JSON, **(headers or {})}, raw)


def detections(*labels: str, score: float = 0.9) -> dict[str, Any]:
    return {"detections": [{"label": label, "score": score, "box": [1, 2, 3, 4]}
                           for label in labels]}


def test_equal_bodies_count_every_path_as_equal() -> None:
    body = detections("cat", "dog")
    result = compare(r(body), r(body), r(body), make_rules())
    assert set(result.outcomes) == {"status", "header:content-type", "$.detections[*].label",
                                    "$.detections[*].score", "$.detections[*].box[*]"}
    assert set(result.outcomes.values()) == {Outcome.EQUAL} and not result.differences


def test_a_different_label_is_a_mismatch_reported_by_collapsed_path() -> None:
    result = compare(r(detections("cat", "dog")), r(detections("cat", "dog")),
                     r(detections("cat", "cow")), make_rules())
    assert result.paths(Outcome.MISMATCH) == ["$.detections[*].label"] and result.mismatched
    (diff,) = result.differences
    assert (diff.path, diff.primary, diff.candidate) == ("$.detections[1].label", "dog", "cow")


def test_noise_is_a_difference_primary_and_secondary_share() -> None:
    p, s, c = ({"id": n, "label": "cat"} for n in ("a", "b", "c"))
    result = compare(r(p), r(s), r(c), make_rules())
    assert result.outcomes["$.id"] is Outcome.NOISE and not result.mismatched


def test_noise_is_element_wise_not_per_collapsed_path() -> None:
    # primary and secondary differ on element 0; the candidate differs on element 1: a mismatch
    p, s, c = ({"xs": xs} for xs in ([1, 2], [9, 2], [1, 3]))
    assert compare(r(p), r(s), r(c), make_rules()).outcomes["$.xs[*]"] is Outcome.MISMATCH


def test_tolerances_abs_and_rel() -> None:
    rules = make_rules(tolerances={"$.detections[*].score": Tolerance(abs=0.01),
                                   "$.detections[*].box[*]": Tolerance(rel=0.1)})
    near = detections("cat", score=0.905)
    near["detections"][0]["box"] = [1.05, 2, 3, 4]
    result = compare(r(detections("cat")), r(detections("cat")), r(near), rules)
    assert result.outcomes["$.detections[*].score"] is Outcome.WITHIN_TOLERANCE
    assert result.outcomes["$.detections[*].box[*]"] is Outcome.WITHIN_TOLERANCE
    far = detections("cat", score=0.95)
    assert compare(r(detections("cat")), r(detections("cat")), r(far),
                   rules).outcomes["$.detections[*].score"] is Outcome.MISMATCH
    assert not Tolerance(abs=1).accepts("1", 1) and not Tolerance(abs=1).accepts(True, 1)


def test_missing_and_extra_fields_are_mismatches() -> None:
    full = {"label": "cat", "score": 0.5}
    result = compare(r(full), r(full), r({"label": "cat", "extra": 1}), make_rules())
    assert result.paths(Outcome.MISMATCH) == ["$.extra", "$.score"]
    shorter = compare(r(detections("a", "b")), r(detections("a", "b")), r(detections("a")),
                      make_rules())
    assert "$.detections[*].label" in shorter.paths(Outcome.MISMATCH)


def test_types_matter_but_int_equals_float() -> None:
    rules = make_rules()
    assert not compare(r({"n": 1}), r({"n": 1}), r({"n": 1.0}), rules).differences
    others: list[Any] = [True, "1", None, [], {}]
    for other in others:
        result = compare(r({"n": 1}), r({"n": 1}), r({"n": other}), rules)
        assert result.mismatched, other
    assert compare(r({"n": []}), r({"n": []}), r({"n": {}}), rules).mismatched


def test_reordered_arrays_by_mode() -> None:
    a, b = detections("cat", "dog"), detections("dog", "cat")
    assert compare(r(a), r(a), r(b), make_rules()).mismatched  # ordered by default
    by_label = make_rules(arrays={"$.detections": ArrayOrder("sort_by", "label")})
    assert not compare(r(a), r(a), r(b), by_label).differences
    as_set = make_rules(arrays={"$.tags": ArrayOrder("set")})
    assert not compare(r({"tags": [1, "x", {"k": 1}]}), r({"tags": [1, "x", {"k": 1}]}),
                       r({"tags": [{"k": 1}, "x", 1]}), as_set).differences
    assert compare(r({"tags": [1, 1]}), r({"tags": [1, 1]}), r({"tags": [1]}),
                   as_set).mismatched  # a multiset: duplicates count


def test_ignored_paths_and_keys_are_not_compared() -> None:
    rules = make_rules(ignore=["$.meta", "$..request_id", "$.items[*].t"])
    p = {"meta": {"host": "a"}, "request_id": 1, "items": [{"t": 1, "request_id": 1, "v": 1}]}
    c = {"meta": {"host": "b"}, "request_id": 2, "items": [{"t": 2, "request_id": 2, "v": 1}]}
    result = compare(r(p), r(p), r(c), rules)
    assert not result.differences and set(result.outcomes) == {"status", "header:content-type",
                                                               "$.items[*].v"}


def test_status_and_headers_are_pseudo_paths() -> None:
    rules = make_rules(headers=["Content-Type", "x-api-version"])
    body = {"label": "cat"}
    v1, v2 = {"x-api-version": "1"}, {"x-api-version": "2"}
    result = compare(r(body, headers=v1), r(body, headers=v1), r(body, headers=v2), rules)
    assert result.paths(Outcome.MISMATCH) == ["header:x-api-version"]
    missing = compare(r(body, headers=v1), r(body, headers=v1), r(body), rules)
    assert missing.paths(Outcome.MISMATCH) == ["header:x-api-version"]
    # a status mismatch skips the body: an error body would report every path
    failed = compare(r(body), r(body), r({"error": "boom"}, status=500), rules)
    assert failed.paths(Outcome.MISMATCH) == ["status"] and "$.label" not in failed.outcomes
    flaky = compare(r(body), r({"error": "x"}, status=503), r(body, status=503), rules)
    assert flaky.outcomes["status"] is Outcome.NOISE


def test_non_json_bodies_compare_as_bytes_at_root() -> None:
    rules = make_rules()
    same = compare(r(b"<html>ok"), r(b"<html>ok"), r(b"<html>ok"), rules)
    assert same.outcomes["$"] is Outcome.EQUAL
    diff = compare(r(b"<html>ok"), r(b"<html>ok"), r(b"<html>no"), rules)
    assert diff.paths(Outcome.MISMATCH) == ["$"]
    half = compare(r({"a": 1}), r({"a": 1}), r(b"\xff\xfe"), rules)
    assert half.paths(Outcome.MISMATCH) == ["$"]
    assert compare(r(b""), r(b""), r(b""), rules).outcomes["$"] is Outcome.EQUAL


def test_odd_keys_get_bracketed_paths() -> None:
    p, c = {"a.b": 1, "x y": {"ok": 1}}, {"a.b": 2, "x y": {"ok": 1}}
    result = compare(r(p), r(p), r(c), make_rules(ignore=['$["x y"]']))
    assert result.paths(Outcome.MISMATCH) == ['$["a.b"]'] and '$["x y"].ok' not in \
        result.outcomes


@pytest.mark.parametrize("text", ["", "detections", "$.a..b", "$[0]", "$.a[", "header:",
                                  "$..", "$.a b"])
def test_bad_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected|cannot read|not a header"):
        normalize_path(text)


def test_paths_normalize() -> None:
    assert normalize_path(' $.a["b"][*].c ') == "$.a.b[*].c"
    assert normalize_path("header:Content-Type") == "header:content-type"
    assert normalize_path("$..token") == "$..token" and normalize_path("status") == "status"


def test_float_leaves_take_the_same_rules_as_any_other() -> None:
    # floats have a fast path of their own; it must classify exactly like the general one
    rules = make_rules(tolerances={"$.x": Tolerance(abs=0.1)})
    cases = [((1.0, 1.0, 1.0), Outcome.EQUAL), ((1.0, 2.0, 3.0), Outcome.NOISE),
             ((1.0, 1.0, 1.05), Outcome.WITHIN_TOLERANCE), ((1.0, 1.0, 1.5), Outcome.MISMATCH),
             ((-1.0, -1.0, -1.05), Outcome.WITHIN_TOLERANCE)]
    for (p, s, c), expected in cases:
        got = compare(r({"x": p, "y": p}), r({"x": s, "y": s}), r({"x": c, "y": c}), rules)
        assert got.outcomes["$.x"] is expected, (p, s, c)
        untolerated = Outcome.MISMATCH if expected is Outcome.WITHIN_TOLERANCE else expected
        assert got.outcomes["$.y"] is untolerated, (p, s, c)
    rel = make_rules(tolerances={"$.x": Tolerance(rel=0.1)})
    assert compare(r({"x": -10.0}), r({"x": -10.0}), r({"x": -10.5}),
                   rel).outcomes["$.x"] is Outcome.WITHIN_TOLERANCE


NOW = 1_780_000_000.0
WINDOW = (NOW, NOW + 0.05)


@pytest.mark.parametrize(("path", "value", "kind"), [
    ("$.served_at", "2026-05-28T20:26:40.010Z", Kind.TIMESTAMP),  # Node's toISOString()
    ("$.served_at", "2026-05-28T20:26:40.010+00:00", Kind.TIMESTAMP),  # Python's isoformat()
    ("$.served_at", "2026-05-28 20:26:40", Kind.TIMESTAMP),  # naive: UTC
    ("$.t", "Thu, 28 May 2026 20:26:41 GMT", Kind.TIMESTAMP),  # an HTTP date
    ("$.t", NOW + 0.01, Kind.TIMESTAMP), ("$.t", int(NOW * 1000), Kind.TIMESTAMP),
    ("$.released", "2024-01-01T00:00:00Z", None),  # a date, not the request's time
    ("$.t", 12.5, None),
    ("$.request_id", "9b2f0c3e-1a2b-4c3d-8e9f-001122334455", Kind.ID),
    ("$.trace", "0af7651916cd43dd8448eb211c80319c", Kind.ID),
    ("$.id", "req_8f3a2b91", Kind.ID),
    ("$.label", "cat", None), ("$.model", "resnet-50", None), ("$.model", "yolov8n", None),
    ("$.processing_ms", 0, Kind.DURATION), ("$.stats.latencyMs", 2.5, Kind.DURATION),
    ("$.duration", 1, Kind.DURATION), ("$.inference_time", 3, Kind.DURATION),
    ("$.uptime_s", 12, Kind.COUNTER), ("$.uptimeSeconds", 12.5, Kind.COUNTER),
    ("$.tasks_total", 40, Kind.COUNTER), ("$.m[2].tasks_processed", 3, Kind.COUNTER),
    ("$.count", 3, None), ("$.detections", 3, None), ("$.score_ms", "3", None),
    ("$.timeout_s", 30, None), ("$.class_id", 3, None),
])
def test_value_kind_by_shape_and_key(path: str, value: Any, kind: Kind | None) -> None:
    assert value_kind(path, value, WINDOW) is kind


def test_epoch_seconds_reads_iso_http_and_epoch_numbers() -> None:
    assert epoch_seconds("2026-05-28T20:26:40.010Z") == pytest.approx(NOW + 0.010)
    assert epoch_seconds("2026-05-28T22:26:40.010+02:00") == pytest.approx(NOW + 0.010)
    assert epoch_seconds(NOW * 1e6) == pytest.approx(NOW)
    for value in ("2026-13-40T00:00:00Z", "soon", 5, True, None, float("nan")):
        assert epoch_seconds(value) is None


def test_kind_rules_hold_rusts_value_to_its_kind() -> None:
    stamp = "2026-05-28T20:26:40.010Z"
    assert kind_accepts(Kind.TIMESTAMP, stamp, "2026-05-28T20:26:44.000Z", WINDOW)
    assert not kind_accepts(Kind.TIMESTAMP, stamp, "2026-05-28T20:26:46.000Z", WINDOW)
    assert not kind_accepts(Kind.TIMESTAMP, stamp, NOW, WINDOW)  # a number for a string
    assert kind_accepts(Kind.TIMESTAMP, stamp, "2026-05-28T20:26:46Z", WINDOW, tolerance=10)
    assert kind_accepts(Kind.ID, "req_8f3a2b91", "9b2f0c3e1a2b4c3d8e9f001122334455")
    assert not kind_accepts(Kind.ID, "req_8f3a2b91", "cat")
    assert not kind_accepts(Kind.ID, "req_8f3a2b91", 7)
    assert kind_accepts(Kind.DURATION, 3, 0.5) and not kind_accepts(Kind.DURATION, 3, -1)
    assert not kind_accepts(Kind.COUNTER, 3, float("inf"))
    assert not kind_accepts(Kind.COUNTER, 3, "3")
