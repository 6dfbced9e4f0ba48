from __future__ import annotations

import asyncio
import random
import re
import statistics
from pathlib import Path

import pytest

from vrm_tui.core.errors import FaultError, ModelTooLarge, ProfileError
from vrm_tui.rehearsal.faults import Faults
from vrm_tui.rehearsal.profile import Latency, Model, load_profile
from vrm_tui.rehearsal.vram import VramPool

PROFILES = Path(__file__).resolve().parents[2] / "configs" / "rehearsal"


def test_default_profiles_make_rust_2_to_5_times_faster() -> None:
    rust, ts = load_profile(PROFILES / "rust.yaml"), load_profile(PROFILES / "typescript.yaml")
    assert (rust.backend, ts.backend) == ("rust", "typescript")
    for task in ("classify", "detect", "segment", "embed", "metrics"):
        ratio = ts.latency_ms[task].median / rust.latency_ms[task].median
        assert 2 <= ratio <= 5, f"{task}: typescript/rust median ratio {ratio:.1f}"
    assert set(rust.models) == set(ts.models)


def test_latency_sampling_has_the_profiles_median_and_p95() -> None:
    rng = random.Random(1)
    samples = sorted(Latency(10, 25).sample(rng) for _ in range(20000))
    assert statistics.median(samples) == pytest.approx(10, rel=0.03)
    assert samples[int(0.95 * len(samples))] == pytest.approx(25, rel=0.05)


def test_bad_profile_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("backend: rust\nlatency_ms:\n  metrics: {median: -1}\n")
    with pytest.raises(ProfileError, match=r"p\.yaml: latency_ms\.metrics\.median=-1"):
        load_profile(bad)
    bad.write_text("backend: go\nlatency_ms:\n  metrics: {median: 1}\n")
    with pytest.raises(ProfileError, match="backend='go'"):
        load_profile(bad)


def test_vram_pool_evicts_least_recently_used() -> None:
    pool = VramPool(10, overhead_gb=1)
    a, b, c = Model("a", 4, "x"), Model("b", 4, "x"), Model("c", 4, "x")
    assert not pool.place(a).hit and not pool.place(b).hit
    assert pool.place(a).hit  # a is now the most recent
    placed = pool.place(c)
    assert placed.evicted == ("b",) and pool.loaded == ["a", "c"] and pool.used_gb == 9
    with pytest.raises(ModelTooLarge, match="MAX_VRAM_GB is 10"):
        pool.place(Model("huge", 9.5, "x"))


def test_faults_update_is_all_or_nothing() -> None:
    faults = Faults()
    faults.update({"error_rate": 0.2, "latency_ms": 50})
    with pytest.raises(FaultError, match="error_rate=2"):
        faults.update({"latency_ms": 10, "error_rate": 2})
    assert faults.as_dict() == {"latency_ms": 50, "error_rate": 0.2, "hang": False,
                                "unhealthy": False, "divergence_rate": 0.0,
                                "divergence_path": "any", "jitter": 0.0}
    with pytest.raises(FaultError, match="unknown"):
        faults.update({"explode": True})
    faults.clear()
    assert faults.error_rate == 0


async def test_faults_serialize_while_requests_hang() -> None:
    faults = Faults()
    faults.update({"hang": True})
    held = asyncio.create_task(faults.wait_unhung())
    await asyncio.sleep(0)  # let the task start waiting on the event
    assert faults.as_dict()["hang"] is True  # asdict() deep-copied the waiter's future and raised
    faults.clear()
    await held


def test_profile_checks_the_parity_knobs(tmp_path: Path) -> None:
    base = "backend: rust\nlatency_ms:\n  metrics: {median: 1}\n"
    bad = tmp_path / "p.yaml"
    for line, message in (("divergence_path: colour", "divergence_path='colour'"),
                          ("divergence_rate: 1.5", "divergence_rate=1.5"),
                          ("jitter: -1", "jitter=-1"),
                          ("volatile_fields: [uptime]", "volatile_fields")):
        bad.write_text(base + line + "\n")
        with pytest.raises(ProfileError, match=rf"p\.yaml: {re.escape(message)}"):
            load_profile(bad)
    rust = load_profile(PROFILES / "rust.yaml")
    assert rust.volatile_fields == ("request_id", "timestamp", "processing_time_ms")
    assert rust.divergence_rate == 0 and 0 < rust.jitter <= 0.005
