"""The parity gate judges each route on its own (issue 20): a divergence on one route is not
diluted by the others' traffic, and many routes false-alarm no more often than one."""

from __future__ import annotations

from vrm_tui.migrate.gates import parity_gate
from vrm_tui.migrate.plan import Plan

PROCESS = "POST /api/v1/vision/process"
METRICS = "GET /api/v1/vision/metrics"
MODELS = "GET /api/v1/vision/models"


def counts(routes: dict[str, list[int]], unanswered: int = 0) -> dict[str, object]:
    return {"routes": routes, "unanswered": unanswered}


def test_five_percent_on_one_route_of_three_fails_where_pooled_is_inconclusive() -> None:
    plan = Plan()
    gate = parity_gate(plan, counts({PROCESS: [300, 15], METRICS: [300, 0], MODELS: [300, 0]}))
    assert gate.status == "fail"
    assert gate.value == f"{PROCESS} 15/300 (5.0%); 3 routes"
    assert "any route" in gate.threshold
    assert parity_gate(plan, counts({"all": [900, 15]})).status == "inconclusive"


def test_a_step_judges_what_each_route_compared_since_it_began() -> None:
    plan = Plan(min_samples=50)
    base = counts({PROCESS: [1000, 100], METRICS: [500, 0]}, unanswered=2)
    now = counts({PROCESS: [1040, 100], METRICS: [1000, 0], MODELS: [10, 0]}, unanswered=3)
    gate = parity_gate(plan, now, base)
    assert gate.status == "inconclusive"  # the old mismatches are not this step's
    assert gate.value == f"{MODELS} 0/10 (0.0%), need 50; 3 routes, 1 unanswered"
    clean = counts({PROCESS: [3000, 100], METRICS: [3000, 0]})
    assert parity_gate(plan, clean, base).status == "pass"
    # a route that passes alone is not enough while another cannot yet
    assert parity_gate(plan, counts({PROCESS: [3000, 100], METRICS: [530, 0]}),
                       base).status == "inconclusive"


def test_nothing_compared_and_an_older_pooled_base() -> None:
    plan = Plan()
    gate = parity_gate(plan, counts({}))
    assert gate.status == "inconclusive" and gate.value.startswith("nothing compared yet")
    # a migration saved before routes were judged apart: counted from zero
    assert parity_gate(plan, counts({PROCESS: [3000, 0]}), [10, 0, 0]).status == "pass"


def test_many_healthy_routes_need_more_evidence_each_not_less() -> None:
    plan = Plan()
    one = parity_gate(plan, counts({PROCESS: [900, 0]}))
    many = parity_gate(plan, counts({f"GET /r{n}": [900, 0] for n in range(10)}))
    assert one.status == "pass" and many.status == "inconclusive"
