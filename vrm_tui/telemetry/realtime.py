"""What a backend's requests are doing now: ok, slow, errors, failing, hanging or idle.

The access log speaks only of requests that ended, so during a hang it goes quiet and its
error rate even falls. Two live signals close that gap: the health probe (a request to the
backend now, with a timeout) and the requests nginx has waiting on the backend while it,
which should be answering, logs nothing. Either makes the backend `hanging` within seconds;
answers that still arrive make it `slow` instead. The waiting requests are the backend's
own (the Lua module counts them per upstream, /vrm/served); only where nginx does not count
them does its stub_status (all upstreams together) stand in, with a guard against blaming
the wrong backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vrm_tui.core.backend import Backend
from vrm_tui.telemetry.accesslog import BackendWindow, TrafficSnapshot
from vrm_tui.telemetry.health import Probe

NowWord = Literal["ok", "slow", "errors", "failing", "hanging", "idle"]

STALL_S = 3.0  # silent this long, with requests in flight, is a hang...
STALL_EXPECTED = 5.0  # ...when at its usual rate it would have answered this many
FAILING_RATE = 0.5  # 10 s error rate from which a backend is failing, not just erroring
ERRORS_RATE = 0.05


@dataclass(frozen=True)
class Now:
    word: NowWord
    reason: str = ""


def judge(stats: BackendWindow, now: float, probe: Probe | None = None,
          in_flight: int | None = None, share: float | None = None,
          failing_for_s: float = 0.0, waiting: int | None = None,
          degraded: str = "") -> Now:
    """The backend's state now. `waiting` is the requests nginx has waiting on this backend
    (its own count; None: unknown, and `in_flight`, nginx's count over all upstreams, stands
    in); `share` the fraction of balanced traffic nginx sends it (None: unknown);
    `failing_for_s` the seconds at the window's end without one success; `degraded` why its
    probe is above its own recent baseline ('' when it is not)."""
    silent_s = now - stats.last_answer_at if stats.last_answer_at is not None else None
    answering = silent_s is not None and silent_s < STALL_S and stats.recent_requests > 0
    # Short: the pane's reason line must not wrap at 120 columns.
    if waiting is not None:
        at_nginx = f"{waiting} waiting at nginx"
    else:
        at_nginx = (f"{in_flight} requests are in flight at nginx (all backends)"
                    if in_flight else "")
    if probe is not None and probe.timed_out:
        if answering:  # the answers decide: they still arrive, only slower than the probe
            return Now("slow", f"health probe: {probe.error}, but requests are answered "
                               f"(the last {silent_s:.0f} s ago)")
        return Now("hanging", f"health probe: {probe.error}" + (f"; {at_nginx}" if at_nginx
                                                               else ""))
    # At its usual rate it would have answered STALL_EXPECTED times by now, and requests
    # wait on it. Its own count says so; nginx's counts every upstream: then a backend whose
    # own probe answers, or that gets no traffic, is not the one they wait on.
    if waiting is not None:
        stalled = waiting > 0
    else:
        own_probe_answers = probe is not None and probe.healthy
        stalled = bool(in_flight) and share != 0 and not own_probe_answers
    if stalled and silent_s is not None and silent_s >= STALL_S \
            and stats.rate * silent_s >= STALL_EXPECTED:
        return Now("hanging", f"no answer for {silent_s:.0f} s; {at_nginx}")
    rate = stats.recent_error_rate
    if failing_for_s:
        return Now("failing", f"no successful requests in the last {failing_for_s:.0f} s")
    if rate is not None and rate >= FAILING_RATE:
        return Now("failing", f"{100 * rate:.0f}% of attempts failed in the last 10 s")
    if rate is not None and rate >= ERRORS_RATE:
        return Now("errors", f"{100 * rate:.0f}% of attempts failed in the last 10 s")
    if stats.recent_requests == 0:
        return Now("idle", "no requests in the last 10 s")
    if degraded:  # answers arrive, above its baseline
        return Now("slow", f"{degraded}; requests are answered")
    return Now("ok")


def failing_for_s(stats: BackendWindow) -> float:
    """Seconds at the window's end with attempts but not one success (0 when none)."""
    if not stats.ok_series or not stats.slot_s:
        return 0.0
    slots, attempts = 0, 0.0
    for ok, rate in zip(reversed(stats.ok_series), reversed(stats.rate_series), strict=False):
        if ok:
            break
        slots += 1
        attempts += rate * stats.slot_s
    return slots * stats.slot_s if attempts else 0.0


def words(snapshot: TrafficSnapshot) -> dict[Backend, NowWord]:
    """Each backend's state from the access log alone (no probe, share unknown): what the TUI
    compares between polls to show a change at once instead of at the next paint."""
    return {backend: judge(stats, snapshot.at, None, snapshot.in_flight, None,
                           failing_for_s(stats)).word
            for backend, stats in snapshot.backends.items()}
