"""The migration as words: its steps, what happened, and what happens next and when.

Plain text for `vrm migrate status` and the lines the TUI's migration pane shows, so both
faces say the same thing.
"""

from __future__ import annotations

import time
from datetime import datetime

from vrm_tui.migrate.plan import SHADOW
from vrm_tui.migrate.state import MigrationState


def clock(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S") if at else "?"


def step_name(weight: int) -> str:
    """`rust 10%`, or `shadow (rust 0%, parity)` for the shadow step."""
    return "shadow (rust 0%, parity)" if weight == SHADOW else f"rust {weight}%"


def next_line(state: MigrationState, guarded: bool, now: float | None = None) -> str:
    """What happens next and when, in one line."""
    now = now or time.time()
    steps = state.steps
    if state.active and not guarded:
        return ("UNGUARDED: no guard checks this migration; rust stays at "
                f"{state.target}% until `vrm migrate resume` (adopt) or `vrm migrate abort`")
    if state.phase == "paused":
        return (f"paused — gates not evaluating since {clock(state.paused_at)}; resume to "
                f"bake the remaining {max(0.0, state.plan['bake_seconds'] - state.baked()):.0f}s"
                ", promote to go on, abort to roll back")
    if state.phase == "applying":
        return f"applying rust {state.target}%"
    if state.phase == "baking":
        step_end, plan_end = state.eta(now)
        if state.step + 1 >= len(steps):  # the last step: its end is the plan's (said once)
            return f"next: done at {clock(step_end)} if gates hold"
        return (f"next: {step_name(steps[state.step + 1])} at {clock(step_end)} if gates "
                f"hold; done by ~{clock(plan_end)}")
    return f"{state.phase}: {state.reason}"


def step_outcomes(state: MigrationState) -> dict[int, str]:
    """How each finished step ended ("passed", "promoted by X (gates inconclusive)", ...)."""
    found: dict[int, str] = {}
    for record in state.history:
        outcome = str(record.get("outcome", ""))
        detail = str(record.get("detail", ""))
        found[int(record.get("step", -1))] = detail if outcome == "promoted" else outcome
    return found


def lines(state: MigrationState, guarded: bool, now: float | None = None) -> list[str]:
    """The readable timeline `vrm migrate status` prints."""
    now = now or time.time()
    label = "UNGUARDED" if state.active and not guarded else state.phase
    out = [f"migration {state.id}: {label}, started {clock(state.started)}"
           + (f" by {state.started_by}" if state.started_by else "")
           + (f", guard pid {state.owner_pid}" if guarded and state.owner_pid else "")]
    outcomes = step_outcomes(state)
    bake = float(state.plan["bake_seconds"])
    for index, weight in enumerate(state.steps):
        if index in outcomes:
            mark = "✓" if outcomes[index] == "passed" else (
                "✗" if outcomes[index] in ("failed", "stopped") else "!")
            text = outcomes[index]
        elif index == state.step and state.active:
            baked = state.baked(now if guarded else state.updated)
            mark, text = "●", f"{label}, {baked:.0f}/{bake:g}s baked"
        elif index == state.step and state.phase == "rolled-back":
            mark, text = "✗", "failed"
        else:
            mark, text = "·", "to do"
        out.append(f"  {mark} step {index + 1}: {step_name(weight)}  {text}")
    for gate in (state.verdict or {}).get("gates", []):
        out.append(f"      {gate['status']:12} {gate['name']}: {gate['value']} "
                   f"({gate['threshold']})")
    out.append(f"  {next_line(state, guarded, now)}")
    return out
