from __future__ import annotations

from pathlib import Path

import pytest

from vrm_tui.core.errors import PlanError
from vrm_tui.migrate.plan import DEFAULT_PLAN, Plan, Thresholds, load, parse_duration, parse_steps


def _plan(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    return path


def test_the_shipped_plan_loads_and_round_trips() -> None:
    plan = load(DEFAULT_PLAN)
    assert plan == Plan()  # the file and the defaults agree
    assert Plan.from_dict(plan.to_dict()) == plan


def test_a_saved_plan_without_newer_gate_settings_still_loads() -> None:
    data = Plan().to_dict()
    del data["gates"]["error_confidence"], data["gates"]["error_rate_margin"]
    assert Plan.from_dict(data).gates == Thresholds()


def test_durations_and_flags(tmp_path: Path) -> None:
    path = _plan(tmp_path, "steps: [5, 25]\nbake_seconds: 5m\ngate_interval_seconds: 30s\n")
    plan = load(path)
    assert (plan.steps, plan.bake_seconds, plan.gate_interval_seconds) == ((5, 25), 300, 30)
    plan = load(path, steps="10, 50,100", bake="1h", gate_interval=2.5)
    assert (plan.steps, plan.bake_seconds, plan.gate_interval_seconds) == ((10, 50, 100),
                                                                          3600, 2.5)
    assert parse_duration("90", "--bake") == 90 and parse_duration(1.5, "--bake") == 1.5
    assert load(_plan(tmp_path, "")) == Plan()  # an empty file is the defaults


BAD_PLANS = [
    ("gates:\n  vram_fraction_fail: abc\n", "gates.vram_fraction_fail='abc'"),
    ("vram_fraction_fail: 0.5\n", "unknown setting 'vram_fraction_fail' (it belongs under"),
    ("min_samples: -1\n", "min_samples=-1"),
    ("min_samples: 0\n", "min_samples=0"),
    ("min_samples: 2.5\n", "min_samples=2.5"),
    ("min_samples: true\n", "min_samples=True"),
    ("steps: [true]\n", "steps: True is not a rust weight"),
    ("steps: [10.5, 50]\n", "steps: 10.5 is not a rust weight"),
    ("steps: [0, 50]\n", "steps: 0 is not a rust weight"),
    ("steps: [10, 101]\n", "steps: 101 is not a rust weight"),
    ("steps: [50, 10]\n", "steps=[50, 10]: expected strictly increasing"),
    ("steps: [10, 10, 50]\n", "steps=[10, 10, 50]: expected strictly increasing"),
    ("steps: []\n", "steps: expected at least one"),
    ("steps: 10\n", "steps=10: expected a list"),
    ("steps: ['10', '50']\n", "steps: '10' is not a rust weight"),
    ("bake_seconds: .inf\n", "bake_seconds=inf"),
    ("bake_seconds: .nan\n", "bake_seconds=nan"),
    ("bake_seconds: -5\n", "bake_seconds=-5"),
    ("bake_seconds: 0\n", "bake_seconds=0"),
    ("bake_seconds: 5 minutes\n", "bake_seconds='5 minutes'"),
    ("bake_seconds: yes\n", "bake_seconds=True"),
    ("bake_seconds: 1" + "0" * 400 + "\n", "bake_seconds=1000"),
    ("gate_interval_seconds: 600\n", "gate_interval_seconds=600: expected at most the bake"),
    ("gates:\n  error_rate_fail: 1.5\n", "gates.error_rate_fail=1.5"),
    ("gates:\n  error_rate_fail: '0.1'\n", "gates.error_rate_fail='0.1'"),
    ("gates:\n  error_rate_warn: 0.5\n", "gates.error_rate_warn=0.5: expected at most"),
    ("gates:\n  latency_confidence: 1\n", "gates.latency_confidence=1"),
    ("gates:\n  error_confidence: 0.3\n", "gates.error_confidence=0.3"),
    ("gates:\n  p95_ceiling_ms: -1\n", "gates.p95_ceiling_ms=-1"),
    ("gates:\n  p95_ceiling_ms: .inf\n", "gates.p95_ceiling_ms=inf"),
    ("gates:\n  vram_fraction_fail: .nan\n", "gates.vram_fraction_fail=nan"),
    ("gates:\n  typo: 1\n", "gates: unknown setting 'typo'"),
    ("gates: [1]\n", "gates: expected a mapping"),
    ("bake: 300\n", "unknown setting 'bake'"),
    ("- 10\n- 50\n", "expected a mapping of settings"),
    ("steps: [10\n", "not valid YAML at line 2"),
    ("min_samples: 5\nmin_samples: 50\n", "setting 'min_samples' given twice"),
]


@pytest.mark.parametrize(("text", "message"), BAD_PLANS)
def test_each_bad_plan_is_one_line_naming_the_file_and_field(tmp_path: Path, text: str,
                                                             message: str) -> None:
    path = _plan(tmp_path, text)
    with pytest.raises(PlanError) as caught:
        load(path)
    text = str(caught.value)
    assert text.startswith(str(path)) and message in text, text
    assert "\n" not in text and len(text) < 320


@pytest.mark.parametrize(("flags", "message"), [
    ({"bake": "inf"}, "--bake='inf'"),
    ({"bake": float("inf")}, "--bake=inf"),
    ({"bake": float("nan")}, "--bake=nan"),
    ({"bake": "-5m"}, "--bake='-5m'"),
    ({"bake": "9999h"}, "at most a week"),
    ({"gate_interval": "0s"}, "--gate-interval='0s'"),
    ({"steps": "10,abc"}, "--steps='10,abc'"),
    ({"steps": "50,10"}, "--steps=[50, 10]"),
    ({"steps": "0,10"}, "--steps: 0 is not"),
    ({"bake": "5s"}, "with the flags: gate_interval_seconds=10: expected at most the bake"),
])
def test_bad_flags_are_refused_like_bad_files(flags: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError) as caught:
        load(DEFAULT_PLAN, **flags)  # type: ignore[arg-type]
    assert message in str(caught.value), str(caught.value)


def test_parse_steps_accepts_lists_and_flag_text() -> None:
    assert parse_steps([1, 100], "steps") == (1, 100)
    assert parse_steps("25", "--steps") == (25,)
    with pytest.raises(PlanError):
        parse_steps([True], "steps")


def test_a_corrupt_saved_plan_is_a_plan_error() -> None:
    data = Plan().to_dict()
    data["min_samples"] = "abc"
    with pytest.raises(PlanError, match="saved plan: min_samples='abc'"):
        Plan.from_dict(data)
