"""The load engine against real rehearsal backends with known profiles, and against ab."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Stack, new_stack
from vrm_tui.bench import modes
from vrm_tui.bench.engine import Result, Target, closed_loop, open_loop
from vrm_tui.bench.external import run_ab
from vrm_tui.core import services
from vrm_tui.rehearsal.profile import load_profile
from vrm_tui.stack.local import PROFILE_DIR

TASK = {"model": "resnet50", "image_size": [224, 224]}


def _expected_p50_ms(backend: str) -> float:
    profile = load_profile(PROFILE_DIR / f"{backend}.yaml")
    return profile.latency_ms["classify"].median + profile.per_megapixel_ms * 224 * 224 / 1e6


def _target(stack: Stack, backend: str) -> Target:
    return Target(backend, f"{stack.settings.backend_url(backend)}/api/v1/vision/process",
                  "POST", TASK)


async def _warm(target: Target) -> None:
    await closed_loop(target, 1, requests=3)  # loads the model into simulated VRAM


@pytest.mark.parametrize("backend", ["rust", "typescript"])
async def test_measured_p50_matches_the_profile(shared_stack: Stack, backend: str) -> None:
    """The profile gives processing time; the HTTP round trip comes on top, so it is
    measured on the same path with a no-op request (/health) and added."""
    target = _target(shared_stack, backend)
    await _warm(target)
    noop = await closed_loop(Target("noop", f"{shared_stack.settings.backend_url(backend)}"
                                            "/health"), 4, requests=300)
    result = await closed_loop(target, 4, requests=600)
    assert result.failed == 0 and result.by_backend.keys() == {backend}
    noop_p50 = noop.latency.percentile_ms(50)
    assert noop_p50 is not None
    expected = _expected_p50_ms(backend) + noop_p50
    # The median of 600 unseeded draws has about 3% relative error (typescript's spread):
    # 15% below is 5 of those. Contention on this shared 2-core machine only adds (a timer
    # wake-up, more CPU per request), so the upper side is 10% and 2 ms.
    p50 = result.latency.percentile_ms(50)
    assert p50 is not None
    assert 0.85 * expected <= p50 <= 1.1 * expected + 2.0


async def test_open_loop_measures_from_the_intended_send_time(shared_stack: Stack) -> None:
    target = _target(shared_stack, "rust")
    await _warm(target)
    result = await open_loop(target, rate=100, duration=3)
    assert 280 <= result.requests <= 310 and result.failed == 0
    # Measured from the intended send time, so the client's own timer slack (up to 1 ms per
    # send) is included: above the closed-loop figure, never below the profile (the bug it
    # guards against, timing from the actual send, reads low). The upper bound is a sanity
    # check only: on a shared 2-core machine a busy second put p50 at 1.35x the profile.
    p50 = result.latency.percentile_ms(50)
    assert p50 is not None
    assert _expected_p50_ms("rust") * 0.95 <= p50 <= _expected_p50_ms("rust") * 2


async def test_engine_agrees_with_ab(shared_stack: Stack) -> None:
    """A fixed 25 ms answer, so the two medians differ only by the clients' own overhead (a
    profile's random latency gave each median about 1 ms of sampling noise: 2 sigma in 10%)."""
    admin = shared_stack.runtime.admin_url(services.TYPESCRIPT)
    target = Target("typescript", f"{shared_stack.settings.backend_url('typescript')}/health")
    httpx.post(f"{admin}/faults", json={"latency_ms": 25}, timeout=5).raise_for_status()
    try:
        theirs = run_ab(target, requests=400, concurrency=8)
        ours = await closed_loop(target, 8, requests=400)
    finally:
        httpx.delete(f"{admin}/faults", timeout=5).raise_for_status()
    assert theirs.failed == 0 and ours.failed == 0
    assert ours.latency.percentile_ms(50) == pytest.approx(theirs.latency.percentile_ms(50),
                                                           rel=0.1)


def test_benchmark_compare_reports_and_serves_the_comparison(shared_stack: Stack) -> None:
    result = shared_stack.vrm("benchmark", "compare", "--duration", "2", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "faster than typescript" in result.stdout
    folder = next((shared_stack.deploy_dir / "results").iterdir())
    assert {p.name for p in folder.iterdir()} >= {"compare.json", "report.md"}
    report = json.loads((folder / "compare.json").read_text())
    # The profiles give 3.5x; contention on a shared 2-core machine compresses it a little.
    assert 1.5 <= report["speedup"]["ratio"] <= 5, report["speedup"]
    served = httpx.get(f"{shared_stack.proxy}/performance-comparison").json()
    assert served["speedup"] == report["speedup"]


def test_benchmark_refuses_bad_options(shared_stack: Stack) -> None:
    for args in (["--requests", "0"], ["--concurrency", "-2"], ["--duration", "abc"]):
        assert shared_stack.vrm("benchmark", "benchmark", *args).returncode == 2, args


def test_stress_finds_a_max_sustainable_rate(shared_stack: Stack) -> None:
    result = shared_stack.vrm("benchmark", "stress", "--duration", "0.5", timeout=180)
    assert result.returncode == 0, result.stderr
    folder = sorted((shared_stack.deploy_dir / "results").iterdir())[-1]
    stress = json.loads((folder / "stress.json").read_text())["stress"]
    for backend in ("rust", "typescript"):
        steps = stress[backend]["steps"]
        assert steps and steps[0]["concurrency"] == 1
        assert stress[backend]["max_sustainable_rps"] == max(s["rps"] for s in steps
                                                              if s["passed"])
    # At one connection the rate is set by each backend's latency (rust's profile is 3x faster);
    # the peaks are set by this shared machine's CPU, which serves both, so they are not compared.
    assert stress["rust"]["steps"][0]["rps"] > stress["typescript"]["steps"][0]["rps"]
    for backend in ("rust", "typescript"):
        last = stress[backend]["steps"][-1]
        assert not last["passed"] or last["concurrency"] == 256, last


def test_monitor_samples_every_service(shared_stack: Stack) -> None:
    result = shared_stack.vrm("benchmark", "monitor", "--duration", "3", timeout=120)
    assert result.returncode == 0, result.stderr
    folder = sorted((shared_stack.deploy_dir / "results").iterdir())[-1]
    monitor = json.loads((folder / "monitor.json").read_text())
    assert set(monitor["resources"]) == {"vision-proxy", "vision-manager-rust",
                                         "vision-manager-typescript"}
    assert all(r["cpu_pct"]["mean"] is not None for r in monitor["resources"].values())
    assert monitor["vram_gb"]["rust"]["max"] > 0


def test_rate_runs_the_benchmark_open_loop(shared_stack: Stack) -> None:
    result = shared_stack.vrm("benchmark", "benchmark", "--rate", "40", "--duration", "1",
                              timeout=120)
    assert result.returncode == 0, result.stderr
    folder = sorted((shared_stack.deploy_dir / "results").iterdir())[-1]
    report = json.loads((folder / "benchmark.json").read_text())
    for target in ("rust", "typescript", "proxy"):
        found = report["results"][target]
        assert found["mode"] == "open" and 38 <= found["requests"] <= 42, found


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack with the proxy's rate limit at its default (PROXY_RATE_LIMIT=100 per client
    address; the shared stack turns it off)."""
    running = new_stack(tmp_path_factory.mktemp("limited"), PROXY_RATE_LIMIT="100")
    running.up()
    try:
        yield running
    finally:
        running.down()


def _report(stack: Stack, stdout: str, mode: str) -> dict[str, Any]:
    folder = Path(stdout.strip().splitlines()[-1].removeprefix("reports in "))
    assert folder.parent == stack.deploy_dir / "results", stdout
    found: dict[str, Any] = json.loads((folder / f"{mode}.json").read_text())
    return found


def test_default_benchmark_stays_under_the_proxy_rate_limit(limited_stack: Stack) -> None:
    """Issue 20: the default benchmark got 264 of 500 requests 429 from vrm's own proxy and
    exited 1 saying "errors 264". Through the proxy it now paces itself under the limit and
    says so; the backends, loaded directly, are not limited."""
    result = limited_stack.vrm("benchmark", "benchmark", "--requests", "300", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "paced at 80 req/s" in result.stdout and "PROXY_RATE_LIMIT=100/s" in result.stdout
    proxy = _report(limited_stack, result.stdout, "benchmark")["results"]["proxy"]
    assert proxy["mode"] == "open" and proxy["requests"] == 300, proxy
    assert proxy["rate_limited"] == 0 and proxy["failed"] == 0, proxy
    # Open loop never sends faster than asked; the lower side only guards against a run that
    # stalled (a shared 2-core machine).
    assert 40 <= proxy["rps"] <= 82, proxy


def test_monitor_honours_rate_and_names_the_proxys_429s(limited_stack: Stack) -> None:
    """--rate above the proxy's limit (monitor ignored --rate: 38,000 req/s at --rate 50):
    the 429s are counted and named apart from backend errors."""
    result = limited_stack.vrm("benchmark", "monitor", "--rate", "300", "--duration", "2",
                               timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    proxy = _report(limited_stack, result.stdout, "monitor")["results"]["proxy"]
    assert proxy["mode"] == "open" and proxy["requests"] == 600, proxy
    assert proxy["rate_limited"] > 0 and proxy["backend_errors"] == 0, proxy
    assert proxy["rate_limited"] + proxy["ok"] == proxy["requests"], proxy
    assert 150 <= proxy["rps"] <= 302, proxy
    assert (f"proxy: 429 rate-limited by the proxy: {proxy['rate_limited']}; "
            "backend errors: 0") in result.stdout
    assert "above PROXY_RATE_LIMIT=100/s" in result.stdout


def test_compare_honours_rate(shared_stack: Stack) -> None:
    result = shared_stack.vrm("benchmark", "compare", "--rate", "50", "--duration", "2",
                              timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for backend, found in _report(shared_stack, result.stdout, "compare")["results"].items():
        assert found["mode"] == "open" and found["requests"] == 100, (backend, found)
        assert 30 <= found["rps"] <= 51, (backend, found)


def test_stress_refuses_rate(shared_stack: Stack) -> None:
    for mode in ("stress", "all"):
        result = shared_stack.vrm("benchmark", mode, "--rate", "5")
        assert result.returncode == 2, (mode, result.stdout + result.stderr)
        assert result.stderr.count("\n") == 1 and "--rate=5" in result.stderr, result.stderr


def test_stress_says_when_it_stopped_at_its_cap(shared_stack: Stack) -> None:
    """"max sustainable 11093 req/s" was printed when stress stopped at its own c=256 cap:
    a floor, not a maximum. --concurrency lowers the cap so the test stays short."""
    result = shared_stack.vrm("benchmark", "stress", "--concurrency", "2", "--duration",
                              "0.3", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    stress = _report(shared_stack, result.stdout, "stress")["stress"]
    for backend, found in stress.items():
        assert [s["concurrency"] for s in found["steps"]] == [1, 2], found
        # Either both steps passed (the rehearsal backends answer in milliseconds) and the
        # cap stopped it, or a step broke the limit; the text must say which.
        if found["stopped"] == "cap":
            assert (f"{backend}: at least {found['max_sustainable_rps']} req/s: stopped at "
                    "the c=2 cap") in result.stdout
        else:
            assert found["stopped"] == "limit" and not found["steps"][-1]["passed"]
    assert "max sustainable" not in result.stdout or any(
        f["stopped"] == "limit" for f in stress.values())


async def test_progress_never_goes_back_between_phases(shared_stack: Stack) -> None:
    seen: list[tuple[str, float]] = []

    def progress(phase: str, result: Result, fraction: float) -> None:
        seen.append((phase, fraction))

    await modes.compare(shared_stack.settings, modes.Options(duration=0.6), progress)
    fractions = [f for _, f in seen]
    assert {p for p, _ in seen} == {"compare rust", "compare typescript"}
    assert fractions == sorted(fractions) and fractions[-1] == 1.0, seen
    assert max(f for p, f in seen if p == "compare rust") <= 0.5, seen


async def test_a_paced_run_says_when_it_sends_fewer_requests(limited_stack: Stack,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """A low rate limit would stretch 500 paced requests over minutes: the run is held to
    PACED_MAX_S (lowered here) and the note says how many it sent and why."""
    monkeypatch.setattr(modes, "PACED_MAX_S", 2.0)
    found = await modes.benchmark(limited_stack.settings, modes.Options(requests=300))
    proxy = found["results"]["proxy"]
    assert proxy["requests"] == 160 and proxy["rate_limited"] == 0, proxy
    assert found["results"]["rust"]["requests"] == 300
    assert "160 of 300 requests, 2 s at that rate" in found["notes"]["proxy"]
