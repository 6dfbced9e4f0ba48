"""Rehearsal answers under the parity diff: determinism, noise, jitter and divergence rates."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from vrm_tui.parity.config import load_parity_config
from vrm_tui.parity.diff import ArrayOrder, Outcome, Response, Rules, compare, make_rules
from vrm_tui.rehearsal.answers import request_digest, result_for
from vrm_tui.rehearsal.profile import load_profile
from vrm_tui.rehearsal.server import Backend

PROFILES = Path(__file__).resolve().parents[2] / "configs" / "rehearsal"
RULES = load_parity_config().rules_for("POST", "/api/v1/vision/process")
LABEL = "$.result.detections[*].label"


def backend(flavour: str, profile_jitter: float | None = None, **faults: Any) -> Backend:
    profile = load_profile(PROFILES / f"{flavour}.yaml")
    if profile_jitter is not None:
        profile = dataclasses.replace(profile, jitter=profile_jitter)
    made = Backend(profile, 40.0, seed=5)
    made.faults.update(faults)
    return made


def bodies(count: int, models: tuple[str, ...] = ("yolov8", "detr")) -> list[dict[str, Any]]:
    rng = random.Random(11)
    return [{"model": rng.choice(models), "image_size": [rng.choice((320, 640, 1280)), 480],
             "frame": n} for n in range(count)]


def ask(server: Backend, body: dict[str, Any]) -> Response:
    model = server.profile.models[body["model"]]
    width, height = body["image_size"]
    status, answer = server.answer(body, model, width, height,
                                   server.profile.task_latency_ms(model.task, 0.3, server.rng))
    return Response(status, {"content-type": "application/json"}, json.dumps(answer).encode())


def run(rules: Rules, count: int, rust_jitter: float | None = None,
        **rust_faults: Any) -> tuple[int, Counter[str], Counter[str]]:
    """Compare typescript, typescript, rust on `count` bodies: (compared, mismatches, raw diffs)."""
    ts, rust = backend("typescript"), backend("rust", rust_jitter, **rust_faults)
    mismatched: Counter[str] = Counter()
    differing: Counter[str] = Counter()
    for body in bodies(count):
        result = compare(ask(ts, body), ask(ts, body), ask(rust, body), rules)
        mismatched.update(result.paths(Outcome.MISMATCH))
        differing.update(p for p, o in result.outcomes.items() if o is not Outcome.EQUAL)
    return count, mismatched, differing


def test_the_answer_is_a_function_of_the_body() -> None:
    body = {"model": "yolov8", "image_size": [640, 480], "frame": 1}
    ts, rust = backend("typescript"), backend("rust")
    first, second = (json.loads(ask(ts, body).body) for _ in "ab")
    assert first["result"] == second["result"] and first["request_id"] != second["request_id"]
    labels = [d["label"] for d in json.loads(ask(rust, body).body)["result"]["detections"]]
    assert labels == [d["label"] for d in first["result"]["detections"]]
    reordered = {"frame": 1, "image_size": [640, 480], "model": "yolov8"}
    assert request_digest(reordered) == request_digest(body)
    assert result_for("detect", 640, 480, request_digest({**body, "frame": 2})) != \
        first["result"]
    for task in ("classify", "segment", "embed"):
        assert result_for(task, 64, 64, b"x") == result_for(task, 64, 64, b"x")


def test_label_divergence_shows_on_the_label_path_at_its_rate() -> None:
    count, mismatched, _ = run(RULES, 2000, divergence_rate=0.05, divergence_path="label")
    assert mismatched[LABEL] / count == pytest.approx(0.05, abs=0.015)
    others = {p: n for p, n in mismatched.items() if p != LABEL}
    assert not others, others  # jitter (rust's profile) stays within the tolerances


def test_the_same_request_diverges_the_same_way() -> None:
    rust, ts = backend("rust", divergence_rate=0.3, divergence_path="any"), backend("typescript")
    for body in bodies(60):
        first = compare(ask(ts, body), ask(ts, body), ask(rust, body), RULES)
        again = compare(ask(ts, body), ask(ts, body), ask(rust, body), RULES)
        assert first.paths(Outcome.MISMATCH) == again.paths(Outcome.MISMATCH)


def test_volatile_fields_differ_every_call_but_are_noise() -> None:
    rules = make_rules(tolerances=RULES.tolerances)  # nothing ignored
    count, mismatched, differing = run(rules, 300)
    for field in ("$.request_id", "$.timestamp", "$.processing_time_ms"):
        assert differing[field] == count, field
    assert not mismatched


def test_jitter_inside_tolerance_passes_and_outside_is_flagged() -> None:
    count, mismatched, _ = run(RULES, 300, jitter=0.003)
    assert not mismatched
    count, mismatched, _ = run(RULES, 300, jitter=0.3)
    assert mismatched["$.result.detections[*].confidence"] / count > 0.9
    assert LABEL not in mismatched


@pytest.mark.parametrize(("kind", "path"), [
    ("label", LABEL),
    ("missing", "$.result.detections[*].confidence"),
    ("order", "$.result.detections[*].box[*]"),  # labels may repeat; boxes do not
    ("status", "status"),
])
def test_each_divergence_kind_is_caught(kind: str, path: str) -> None:
    count, mismatched, _ = run(RULES, 200, divergence_rate=1.0, divergence_path=kind)
    assert mismatched[path] == count
    if kind == "status":
        assert set(mismatched) == {"status"}  # the body is not compared after a status mismatch


def test_order_divergence_vanishes_when_the_array_is_compared_sorted() -> None:
    rules = make_rules(tolerances=RULES.tolerances, ignore=sorted(RULES.ignore),
                       arrays={"$.result.detections": ArrayOrder("sort_by", "box")})
    # sorting by a value that jitters could misorder near-ties; this rewrite has exact floats
    _, mismatched, _ = run(rules, 100, rust_jitter=0, divergence_rate=1.0,
                           divergence_path="order")
    assert not mismatched
