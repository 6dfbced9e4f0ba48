"""Parity results: counters, Wilson intervals, and the redacted, bounded example store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from vrm_tui.parity.diff import Kind, Outcome, Response, Tolerance, compare, make_rules
from vrm_tui.parity.results import (
    REDACTED,
    Counts,
    ExampleStore,
    ParityResults,
    varies,
    wilson_interval,
)

ENDPOINT = "POST /api/v1/vision/process"


def resp(body: object, status: int = 200, **headers: str) -> Response:
    return Response(status, {"content-type": "application/json", **headers},
                    json.dumps(body).encode())


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(50, 1000)
    assert low == pytest.approx(0.0381, abs=1e-4) and high == pytest.approx(0.0653, abs=1e-4)
    low, high = wilson_interval(0, 100)
    assert low == 0 and high == pytest.approx(0.0370, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0) and wilson_interval(10, 10)[1] == 1.0


def test_counts_per_endpoint_and_path() -> None:
    results = ParityResults()
    rules = make_rules()
    same, other = {"label": "cat", "id": 1}, {"label": "dog", "id": 1}
    for n in range(10):
        candidate = other if n < 3 else same
        results.record(ENDPOINT, compare(resp(same), resp({**same, "id": 2}), resp(candidate),
                                         rules))
    label = results.paths[ENDPOINT]["$.label"]
    assert (label.compared, label.equal, label.mismatched) == (10, 7, 3)
    assert label.mismatch_rate == pytest.approx(0.3)
    assert results.paths[ENDPOINT]["$.id"].equal == 10  # equal to primary: no noise to count
    request = results.endpoints[ENDPOINT]
    assert (request.compared, request.mismatched, request.equal) == (10, 3, 7)
    assert results.top_paths() == [(ENDPOINT, "$.label", label)]
    assert results.total().mismatched == 3


def test_counts_track_each_outcome() -> None:
    counts = Counts()
    for outcome in (Outcome.EQUAL, Outcome.NOISE, Outcome.WITHIN_TOLERANCE, Outcome.MISMATCH):
        counts.add(outcome)
    assert (counts.compared, counts.equal, counts.noise, counts.within_tolerance,
            counts.mismatched) == (4, 1, 1, 1, 1)
    assert counts.raw_difference_rate == 0.75 and counts.interval[0] < 0.25 < counts.interval[1]


def test_results_round_trip_through_an_atomic_file(tmp_path: Path) -> None:
    results = ParityResults(dropped=4)
    results.record(ENDPOINT, compare(resp({"a": 1}), resp({"a": 1}), resp({"a": 2}),
                                     make_rules()))
    path = tmp_path / "state" / "parity.json"
    results.save(path)
    assert ParityResults.load(path) == results
    assert [p.name for p in path.parent.iterdir()] == ["parity.json"]  # no temp file left
    assert ParityResults.load(tmp_path / "absent.json") == ParityResults()
    path.write_text('{"endpoints": {"x": {"bogus": 1}}}')
    with pytest.raises(ValueError, match="not a parity results file"):
        ParityResults.load(path)


def test_examples_are_redacted_bounded_and_persisted(tmp_path: Path) -> None:
    store = ExampleStore(capacity=3, redact=["header:authorization", "$..token", "$.secret"])
    rules = make_rules()
    for n in range(5):
        primary = resp({"label": "cat", "token": "t0", "secret": {"k": 1}, "n": n})
        candidate = resp({"label": "dog", "token": "t1", "secret": {"k": 2}, "n": n})
        comparison = compare(primary, primary, candidate, rules)
        store.add(ENDPOINT, "POST", "/api/v1/vision/process",
                  {"Authorization": "Bearer x", "Accept": "*/*"},
                  json.dumps({"image": "x", "api": {"token": "abc"}}).encode(),
                  primary, primary, candidate, comparison, now=float(n))
    assert len(store) == 3 and [e.time for e in store] == [2.0, 3.0, 4.0]
    example = list(store)[-1]
    assert example.request["headers"] == {"Authorization": REDACTED, "Accept": "*/*"}
    assert example.request["body"]["json"]["api"]["token"] == REDACTED
    assert example.candidate["body"]["json"]["secret"] == REDACTED
    assert example.mismatched == ["$.label", "$.secret.k", "$.token"]
    shown = {d["report_path"]: d for d in example.differences}
    assert (shown["$.label"]["primary"], shown["$.label"]["candidate"]) == ("cat", "dog")
    assert shown["$.token"]["candidate"] == REDACTED == shown["$.secret.k"]["primary"]
    assert "t1" not in json.dumps(store.to_list())

    path = tmp_path / "examples.json"
    store.save(path)
    again = ExampleStore.load(path, redact=["header:authorization"])
    assert again.capacity == 3 and again.to_list() == store.to_list()
    assert len(ExampleStore.load(path, capacity=1)) == 1


def test_non_json_bodies_are_kept_as_text_or_base64() -> None:
    store = ExampleStore(capacity=2)
    text, binary = Response(200, {}, b"<html>"), Response(200, {}, b"\xff\x00")
    example = store.add(ENDPOINT, "GET", "/x", {}, b"", text, text, binary,
                        compare(text, text, binary, make_rules()))
    assert example.primary["body"] == {"text": "<html>"}
    assert example.candidate["body"] == {"base64": "/wA="}
    assert example.request["body"] == {"text": ""}
    json.dumps(example.differences)  # bytes values were made JSON-safe


def test_a_volatile_path_stays_noise_when_the_two_typescript_answers_agree_by_chance() -> None:
    # CI: timings in whole hundredths of a ms; in 1 of 300 samples the two typescript answers
    # took the same time, and rust's different one was reported as a mismatch.
    results = ParityResults()
    rules = make_rules()
    for n in range(30):
        counted = results.record(ENDPOINT, compare(
            resp({"label": "cat", "ms": 10 + n}), resp({"label": "cat", "ms": 11 + n}),
            resp({"label": "cat", "ms": 3 + n}), rules))
        assert not counted.mismatched
    counted = results.record(ENDPOINT, compare(
        resp({"label": "cat", "ms": 12}), resp({"label": "cat", "ms": 12}),
        resp({"label": "cat", "ms": 4}), rules))
    assert not counted.mismatched and counted.outcomes["$.ms"] is Outcome.NOISE
    assert [d.outcome for d in counted.differences] == [Outcome.NOISE]
    ms = results.paths[ENDPOINT]["$.ms"]
    assert (ms.compared, ms.noise, ms.settled, ms.mismatched) == (31, 31, 1, 0)
    assert results.endpoints[ENDPOINT].settled == 1
    assert results.total().mismatched == 0


def test_a_value_of_no_kind_is_noise_once_typescript_varies_it_beyond_chance() -> None:
    rules = make_rules()
    chance = (resp({"v": 12}), resp({"v": 12}), resp({"v": 4}))
    noisy = (resp({"v": 12}), resp({"v": 13}), resp({"v": 4}))
    # nothing learned yet: a difference where typescript agreed is a difference
    results = ParityResults()
    assert results.record(ENDPOINT, compare(*chance, rules)).mismatched
    # typescript agreeing with itself in two thirds of the samples still varies: the old
    # rule (90% of samples) called this stable and every collision a rust mismatch
    results = ParityResults()
    for n in range(30):
        results.record(ENDPOINT, compare(*(chance if n % 3 else noisy), rules))
    v = results.paths[ENDPOINT]["$.v"]
    assert (v.mismatched, v.noise, v.settled) == (0, 30, 20)
    # what was excused never counts as typescript differing
    results = ParityResults()
    for _ in range(5):
        results.record(ENDPOINT, compare(*noisy, rules))
    outcomes = [results.record(ENDPOINT, compare(*chance, rules)).mismatched for _ in range(20)]
    assert not any(outcomes) and results.noisy[ENDPOINT]["$.v"] == 5
    # a real divergence on a stable path is never excused by a varying one beside it
    results = ParityResults()
    for _ in range(20):
        results.record(ENDPOINT, compare(*noisy, rules))
    counted = results.record(ENDPOINT, compare(
        resp({"v": 12, "label": "cat"}), resp({"v": 12, "label": "cat"}),
        resp({"v": 4, "label": "dog"}), rules))
    assert counted.mismatched and counted.paths(Outcome.MISMATCH) == ["$.label"]
    assert results.total().settled == 0


def test_varies_is_a_one_sided_test_against_a_chance_glitch() -> None:
    assert not varies(0, 10_000)
    assert varies(1, 10) and not varies(1, 11)  # P(X >= 1 | 11, 0.001) = 1.1% > 1%
    assert varies(2, 100) and not varies(2, 200)
    assert varies(3, 300) and varies(13, 2000) and not varies(2, 2000)
    assert varies(1700, 2000) and varies(2000, 2000)  # a clock that mostly differs
    assert not varies(5, 4000)  # at the chance rate itself


def test_a_stable_field_stays_exact_however_many_samples() -> None:
    results = ParityResults()
    rules = make_rules()
    for n in range(50):
        same = {"label": "cat", "model": "yolov8"}
        rust = {"label": "dog" if n % 10 == 0 else "cat", "model": "yolov8"}
        results.record(ENDPOINT, compare(resp(same), resp(same), resp(rust), rules))
    assert results.paths[ENDPOINT]["$.label"].mismatched == 5


WINDOW = (1_780_000_000.0, 1_780_000_000.050)


def iso(seconds: float, zulu: bool = True) -> str:
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if zulu else text


def test_a_whole_millisecond_clock_shared_by_chance_is_noise_from_the_first_sample() -> None:
    # Issue 20: two concurrent typescript calls stamped the same millisecond in 13-19% of
    # samples, and each collision counted against rust.
    results = ParityResults()
    rules = make_rules()
    stamp = iso(WINDOW[0] + 0.010)
    for rust in (iso(WINDOW[0] + 0.020, zulu=False), iso(WINDOW[1] + 4.0)):
        counted = results.record(ENDPOINT, compare(
            resp({"served_at": stamp}), resp({"served_at": stamp}),
            resp({"served_at": rust}), rules), rules, WINDOW)
        assert not counted.mismatched
    # rust's clock an hour off, or a string that is no time, or a number for a string
    for wrong in (iso(WINDOW[0] - 3600), "yesterday", 1_780_000_000.01):
        counted = results.record(ENDPOINT, compare(
            resp({"served_at": stamp}), resp({"served_at": stamp}),
            resp({"served_at": wrong}), rules), rules, WINDOW)
        assert counted.mismatched, wrong
    # a date that is part of the answer (not the request's time) stays exact
    counted = results.record(ENDPOINT, compare(
        resp({"released": "2024-01-01T00:00:00Z"}), resp({"released": "2024-01-01T00:00:00Z"}),
        resp({"released": "2024-01-02T00:00:00Z"}), rules), rules, WINDOW)
    assert counted.mismatched
    # with no window (the request's time unknown) no clock is assumed
    assert results.record(ENDPOINT, compare(
        resp({"served_at": stamp}), resp({"served_at": stamp}),
        resp({"served_at": iso(WINDOW[0])}), rules)).mismatched


def test_durations_and_counters_by_key_and_a_counter_never_goes_back() -> None:
    results = ParityResults()
    rules = make_rules()

    def sample(body: dict[str, Any], rust: dict[str, Any], start: float) -> bool:
        return results.record(ENDPOINT, compare(resp(body), resp(body), resp(rust), rules),
                              rules, (start, start + 0.01)).mismatched

    assert not sample({"processing_ms": 3}, {"processing_ms": 1}, 0.0)
    assert not sample({"uptime_s": 100}, {"uptime_s": 98}, 1.0)
    assert not sample({"uptime_s": 101}, {"uptime_s": 99}, 2.0)
    assert sample({"uptime_s": 102}, {"uptime_s": 3}, 3.0)  # rust restarted: went back
    assert sample({"uptime_s": 103}, {"uptime_s": -1}, 4.0)
    assert sample({"processing_ms": 3}, {"processing_ms": "1"}, 5.0)  # a string
    assert sample({"processing_ms": 3}, {}, 6.0)  # missing
    # concurrent samples finish in any order: only one that ended before this began counts
    assert not sample({"tasks_total": 50}, {"tasks_total": 20}, 10.0)
    assert not sample({"tasks_total": 50}, {"tasks_total": 19}, 10.005)
    assert sample({"tasks_total": 51}, {"tasks_total": 18}, 10.02)
    # a count of things in the answer is no counter
    assert sample({"count": 3}, {"count": 2}, 11.0)


def test_ids_are_noise_once_typescript_changed_them_and_kinds_can_be_named() -> None:
    results = ParityResults()
    rules = make_rules()
    stable = "0f9d4b3c2a1e4f5d8c7b6a5948372615"
    body = {"model_id": stable}
    assert results.record(ENDPOINT, compare(resp(body), resp(body),
                                            resp({"model_id": "a" * 32}), rules)).mismatched
    results = ParityResults()
    results.record(ENDPOINT, compare(resp({"id": "req_1a2b3c"}), resp({"id": "req_1a2b3d"}),
                                     resp({"id": "req_9z9z9z"}), rules))
    assert not results.record(ENDPOINT, compare(
        resp({"id": "req_1a2b3e"}), resp({"id": "req_1a2b3e"}), resp({"id": "req_7y7y7y"}),
        rules)).mismatched
    assert results.record(ENDPOINT, compare(
        resp({"id": "req_1a2b3f"}), resp({"id": "req_1a2b3f"}), resp({"id": "cat"}),
        rules)).mismatched
    # the deployment names a path's kind; the kind's rule still holds
    named = make_rules(kinds={"$.generated": Kind.TIMESTAMP})
    results = ParityResults()
    body = {"generated": "2026-01-01T00:00:00Z"}
    assert not results.record(ENDPOINT, compare(
        resp(body), resp(body), resp({"generated": "2026-01-01T00:00:03Z"}), named),
        named).mismatched
    assert results.record(ENDPOINT, compare(
        resp(body), resp(body), resp({"generated": "2026-01-01T00:01:00Z"}), named),
        named).mismatched


def test_an_example_keeps_its_mismatches_however_many_differences_come_before_them() -> None:
    # A full run here (the parity pane's `d`): rust's jittered boxes differed within tolerance
    # on the first 20 leaves, the label that diverged came later, and the example kept no
    # mismatch at all.
    rules = make_rules(tolerances={"$.boxes[*]": Tolerance(abs=0.5)})
    primary = resp({"boxes": [float(n) for n in range(30)], "label": "cat"})
    candidate = resp({"boxes": [n + 0.1 for n in range(30)], "label": "dog"})
    comparison = compare(primary, primary, candidate, rules)
    example = ExampleStore().add(ENDPOINT, "POST", "/api/v1/vision/process", {}, b"{}",
                                 primary, primary, candidate, comparison)
    kept = example.differences
    assert len(kept) == ExampleStore.MAX_DIFFERENCES
    assert kept[0]["report_path"] == "$.label" and kept[0]["outcome"] == "mismatch"
    assert [d["path"] for d in kept[1:3]] == ["$.boxes[0]", "$.boxes[1]"]  # then in order
    assert example.left_out == 31 - ExampleStore.MAX_DIFFERENCES


def test_top_paths_rank_by_what_the_evidence_supports_not_by_one_sample() -> None:
    # Three paths seen once and mismatched once (100%) hid, in the pane's top three, a label
    # path mismatched 400 times in 1,000.
    results = ParityResults()
    results.paths[ENDPOINT] = {"$.label": Counts(compared=1000, equal=600, mismatched=400)}
    results.paths["GET /rare"] = {f"$.field{n}": Counts(compared=1, mismatched=1)
                                  for n in range(3)}
    top = results.top_paths(3)
    assert top[0][:2] == (ENDPOINT, "$.label")
    assert [p for _, p, _ in top[1:]] == ["$.field0", "$.field1"]


def test_a_frequent_mismatch_does_not_push_out_every_example_of_a_rare_one(
        tmp_path: Path) -> None:
    # With 1 mismatch in 60 on another path, the newest 50 often held no example of it: the
    # report ranked the path, and `d` had nothing to show for it.
    store = ExampleStore(capacity=5)
    rules = make_rules()

    def add(field: str, n: int) -> None:
        primary = resp({"label": "cat", "score": 1, "n": n})
        candidate = resp({**json.loads(primary.body), field: "dog" if field == "label" else 2})
        store.add(ENDPOINT, "POST", "/p", {}, b"{}", primary, primary, candidate,
                  compare(primary, primary, candidate, rules), now=float(n))

    add("score", 0)
    for n in range(1, 40):
        add("label", n)
    kept = list(store)
    assert len(kept) == 5 and [e.mismatched for e in kept].count(["$.score"]) == 1
    assert [e.time for e in kept] == [0.0, 36.0, 37.0, 38.0, 39.0]  # oldest first, as before
    add("score", 40)  # the paths share the store: the most kept gives up its oldest
    assert [e.time for e in store] == [0.0, 37.0, 38.0, 39.0, 40.0]
    path = tmp_path / "examples.json"
    store.save(path)
    assert [e.time for e in ExampleStore.load(path, capacity=2)] == [39.0, 40.0]


def test_a_volatile_element_never_excuses_a_real_mismatch_on_its_neighbour() -> None:
    # Review: one element of `$.emb[*]` that changed every time made the whole path volatile,
    # and rust's wrong value (or extra element, or a string for a number) on another element
    # of it, where typescript agreed with itself exactly, was counted as noise.
    results = ParityResults()
    rules = make_rules()
    wrong = 0
    for n in range(200):
        p, s = {"emb": [n + 0.1, 0.2]}, {"emb": [n + 0.2, 0.2]}
        c: object = {"emb": [n + 0.3, 0.2]}
        if n % 20 == 19:
            c = [{"emb": [n + 0.3, 9.0]}, {"emb": [n + 0.3, "0.2"]},
                 {"emb": [n + 0.3, 0.2, 0.5]}][wrong % 3]
            wrong += 1
        results.record(ENDPOINT, compare(resp(p), resp(s), resp(c), rules))
    assert results.total().mismatched == wrong == 10


def test_a_volatile_field_answered_with_the_wrong_type_is_a_mismatch() -> None:
    results = ParityResults()
    rules = make_rules()
    for n in range(20):
        results.record(ENDPOINT, compare(resp({"ms": n}), resp({"ms": n + 1}),
                                         resp({"ms": n + 2}), rules))
    counted = results.record(ENDPOINT, compare(resp({"ms": 3}), resp({"ms": 3}),
                                               resp({"ms": "4"}), rules))
    assert counted.mismatched
    counted = results.record(ENDPOINT, compare(resp({"ms": 3}), resp({"ms": 3}),
                                               resp({"ms": 4.5}), rules))
    assert not counted.mismatched  # an int and a float are both numbers


def test_settled_counts_only_what_became_noise() -> None:
    results = ParityResults()
    rules = make_rules(tolerances={"$.ms": Tolerance(abs=1)})
    for n in range(20):
        results.record(ENDPOINT, compare(resp({"ms": 10.0 * n}), resp({"ms": 10.0 * n + 5}),
                                         resp({"ms": 10.0 * n + 7}), rules))
    results.record(ENDPOINT, compare(resp({"ms": 3.0}), resp({"ms": 3.0}), resp({"ms": 3.5}),
                                     rules))  # within tolerance: not a settlement
    ms = results.paths[ENDPOINT]["$.ms"]
    assert (ms.noise, ms.within_tolerance, ms.settled) == (20, 1, 0)


def test_a_rare_mismatch_seen_only_beside_a_frequent_one_keeps_an_example() -> None:
    # Review: grouped by the first mismatched path, `$.b` (only ever with `$.a`) shared `$.a`'s
    # group and was pushed out like in a plain ring.
    store = ExampleStore(capacity=5)
    rules = make_rules()
    for n in range(30):
        primary = resp({"a": 1, "b": 1, "n": n})
        candidate = resp({"a": 2, "b": 2 if n == 3 else 1, "n": n})
        store.add(ENDPOINT, "POST", "/p", {}, b"{}", primary, primary, candidate,
                  compare(primary, primary, candidate, rules), now=float(n))
    assert [e.mismatched for e in store].count(["$.a", "$.b"]) == 1
    assert [e.time for e in store] == [3.0, 26.0, 27.0, 28.0, 29.0]


def test_noise_is_still_held_to_its_kind_and_shape() -> None:
    # The two typescript clocks differ in most samples: rust's clock an hour off must not
    # pass as noise there, nor a missing or retyped value beside a varying one.
    results = ParityResults()
    rules = make_rules()
    a, b = iso(WINDOW[0] + 0.001), iso(WINDOW[0] + 0.002)

    def counted(rust: object, key: str = "served_at") -> bool:
        return results.record(ENDPOINT, compare(
            resp({key: a}), resp({key: b}), resp({} if rust is None else {key: rust}),
            rules), rules, WINDOW).mismatched

    assert not counted(iso(WINDOW[0] + 0.003, zulu=False))
    assert counted(iso(WINDOW[0] - 3600))
    assert counted(None)
    assert counted(17)
    assert not results.record(ENDPOINT, compare(  # a value of no kind: noise, as before
        resp({"label": "cat"}), resp({"label": "dog"}), resp({"label": "bus"}), rules),
        rules, WINDOW).mismatched


def test_the_report_ranks_routes_worst_first_in_text_and_json() -> None:
    from vrm_tui.parity.report import ParityReport, lines

    results = ParityResults()
    results.endpoints = {"GET /api/v1/vision/metrics": Counts(compared=600, equal=600),
                         ENDPOINT: Counts(compared=300, equal=285, mismatched=15),
                         "GET /rare": Counts(compared=1, mismatched=1)}
    # by the interval's lower bound, as paths are: 1 in 1 says at least 21%, 15 in 300 3%
    assert [r for r, _ in results.ranked_routes()] == ["GET /rare", ENDPOINT,
                                                        "GET /api/v1/vision/metrics"]
    report = ParityReport(10.0, "test", (ENDPOINT,), results)
    text = lines(report)
    at = next(n for n, line in enumerate(text) if line.startswith("ROUTE"))
    assert text[at + 2].startswith(ENDPOINT) and "5.00%" in text[at + 2]
    assert [r["route"] for r in report.as_dict()["by_route"]][1] == ENDPOINT
    assert report.gate_counts() == {"routes": {"GET /api/v1/vision/metrics": [600, 0],
                                               ENDPOINT: [300, 15], "GET /rare": [1, 1]},
                                    "unanswered": 0}
