"""Benchmark reports: JSON and Markdown under results/<timestamp>/, a terminal plot, and the
latest comparison where the proxy serves it (/performance-comparison)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotext

from vrm_tui.bench.engine import Result
from vrm_tui.core.units import percent
from vrm_tui.system.files import write_atomic


def clean(report: dict[str, Any]) -> dict[str, Any]:
    """The report without in-memory Result objects (keys starting with `_`)."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def write(reports: list[dict[str, Any]], results_dir: Path, comparison_file: Path) -> Path:
    """Write every report of a run; returns the run's folder. A full disk leaves no half
    report behind: the folder goes, and the comparison file is replaced whole or not at all."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = results_dir / stamp
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for report in reports:
            (folder / f"{report['mode']}.json").write_text(json.dumps(clean(report), indent=2))
        (folder / "report.md").write_text(markdown(reports, stamp))
    except OSError:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for report in reports:
        if report.get("speedup"):
            comparison = {"generated": stamp, "mode": report["mode"],
                          "speedup": report["speedup"],
                          "results": {k: {key: v[key] for key in ("rps", "latency",
                                                                  "error_rate")}
                                      for k, v in report["results"].items()},
                          "report": str(folder)}
            write_atomic(comparison_file, json.dumps(comparison, indent=2), mode=0o644)
    return folder


def table(report: dict[str, Any]) -> str:
    """A fixed-width table of a report's results, for the terminal and Markdown: the proxy's
    own 429s apart from other errors, how each target was paced, and stress's stopping
    reason."""
    lines = []
    results = report.get("results", {})
    if results:
        lines.append(f"{'target':12}{'requests':>9}{'rps':>9}{'p50':>9}{'p90':>9}{'p99':>9}"
                     f"{'max':>9}{'429':>6}{'errors':>8}")
        for name, r in results.items():
            lat = r["latency"]
            lines.append(f"{name:12}{r['requests']:>9}{r['rps']:>9.1f}"
                         + "".join(f"{_ms(lat[k]):>9}" for k in ("p50_ms", "p90_ms", "p99_ms",
                                                                  "max_ms"))
                         + f"{r.get('rate_limited', 0):>6}{_besides_429(r):>8}")
    for name, note in report.get("notes", {}).items():
        lines.append(f"{name}: {note}")
    lines += failures(report)
    if report.get("speedup"):
        s = report["speedup"]
        lines.append(f"rust is {s['ratio']:.2f}x faster than typescript at p50 "
                     f"({int(s['confidence'] * 100)}% CI {s['ci_low']:.2f}-{s['ci_high']:.2f})")
    for name, found in report.get("stress", {}).items():
        lines.append(f"{name}: {stress_verdict(found)}")
        for step in found["steps"]:
            mark = "ok  " if step["passed"] else "STOP"
            lines.append(f"  {mark} c={step['concurrency']:<4} {step['rps']:>8} req/s "
                         f"p99 {_ms(step['p99_ms'])} errors {percent(step['error_rate'])}")
    for name, found in report.get("resources", {}).items():
        lines.append(f"{name:28} cpu mean {found['cpu_pct']['mean']}% max "
                     f"{found['cpu_pct']['max']}%  rss mean {found['rss_mb']['mean']} MB")
    for name, found in report.get("vram_gb", {}).items():
        lines.append(f"{name:28} vram mean {found['mean']} GB max {found['max']} GB")
    return "\n".join(lines)


def _besides_429(result: dict[str, Any]) -> int:
    return int(result.get("backend_errors", result["failed"]))


def failures(report: dict[str, Any]) -> list[str]:
    """One line per target that had failures, the proxy's rate limit named apart."""
    return [f"{name}: 429 rate-limited by the proxy: {r.get('rate_limited', 0)}; "
            f"backend errors: {_besides_429(r)}" + (f" ({_kinds(r)})" if _kinds(r) else "")
            for name, r in report.get("results", {}).items() if r["failed"]]


def _kinds(result: dict[str, Any]) -> str:
    """The failures besides the proxy's 429s, by status or error kind."""
    limited = result.get("rate_limited", 0)
    kinds = {f"HTTP {code}": n - (limited if code == "429" else 0)
             for code, n in result["statuses"].items() if not code.startswith("2")}
    kinds.update(result.get("errors", {}))
    return ", ".join(f"{kind} {n}" for kind, n in kinds.items() if n)


def stress_verdict(found: dict[str, Any]) -> str:
    """What a stress run found: a maximum only where a step broke the limit; at its own cap
    it found a floor, and says so."""
    best, limit = found["max_sustainable_rps"], found["limit"]
    if found.get("stopped") == "cap":
        return (f"at least {best} req/s: stopped at the c={found['cap']} cap before reaching "
                f"the limit ({limit})")
    if found.get("stopped") == "stopped":
        return f"at least {best} req/s: stopped before reaching the limit ({limit})"
    if not best:
        return f"no step within the limit ({limit}): c=1 already broke it"
    return f"max sustainable {best} req/s ({limit})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}ms"


def markdown(reports: list[dict[str, Any]], stamp: str) -> str:
    parts = [f"# vrm benchmark {stamp}\n"]
    for report in reports:
        parts.append(f"## {report['mode']}\n\n```\n{table(report)}\n```\n")
    return "\n".join(parts)


def plot(results: dict[str, Result], width: int = 80, height: int = 15) -> str:
    """Latency distribution of each target as a terminal plot (plotext)."""
    plotext.clear_figure()
    plotext.plotsize(width, height)
    plotext.theme("clear")
    for name, result in results.items():
        buckets = result.latency.buckets_ms(30)
        if buckets:
            plotext.plot([b[0] for b in buckets], [b[1] for b in buckets], label=name)
    plotext.xscale("log")
    plotext.title("latency distribution (ms, log scale)")
    return str(plotext.build())
