"""Every dashboard action, named once (harlequin's actions.py): its id, default keys, footer
label, help text, whether it changes traffic and its command-palette title.

The app's bindings, the footer, help, the command palette and the read-only gate are all
made from this table. Operators rebind keys with a keymap (binding id -> keys, posting's
`set_keymap`), except rollback: `r` and `ctrl+r` roll back on every screen, modal and the
palette, whatever a keymap says (`keymap()` drops any entry for it, and the app binds it at
the top with priority). In fleet mode rollback is the whole fleet's; one host's rollback
is the Fleet pane's own key (PANE_ACTIONS: bound by the pane, so it acts on its selected row).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from textual.binding import Binding

ROLLBACK_ID = "vrm.rollback"
ROLLBACK_KEYS = "r,ctrl+r"


@dataclass(frozen=True)
class Action:
    id: str  # the binding id a keymap names
    action: str  # the app's action_<name>
    keys: str
    label: str
    tooltip: str
    writes: bool = False  # changes traffic or the stack: refused in read-only mode
    palette: str = ""  # its title in the command palette ("" = not offered there)
    show: bool = True  # in the footer
    key_display: str | None = None


ACTIONS: tuple[Action, ...] = (
    Action(ROLLBACK_ID, "rollback", ROLLBACK_KEYS, "Rollback",
           "All traffic to typescript now: no confirmation, verified, timed", writes=True,
           palette="Roll back (all traffic to typescript)"),
    Action("vrm.migrate", "migrate", "m", "Migrate",
           "Start a gated migration (asks first), or adopt an UNGUARDED one", writes=True),
    Action("vrm.logs", "logs", "l", "Logs", "Follow a service's logs", palette="Logs"),
    Action("vrm.window", "window", "t", "Window", "Latency window: 1m, 5m, 15m",
           palette="Latency window"),
    Action("vrm.help", "help", "question_mark", "Help", "Every key and what it does",
           palette="Help: every key", key_display="?"),
    Action("vrm.rust-up", "rust_up", "plus,equals_sign", "+Rust",
           "Move rust up by the step (asks to confirm)", writes=True,
           palette="Rust up one step", key_display="+"),
    Action("vrm.rust-down", "rust_down", "minus", "-Rust",
           "Move rust down by the step (no confirmation)", writes=True,
           palette="Rust down one step", key_display="-"),
    Action("vrm.weight", "set_weight", "w", "Weight",
           "Set an exact rust weight; shows the upstream diff first", writes=True,
           palette="Set rust weight"),
    Action("vrm.reload", "reload_nginx", "n", "Reload",
           "Re-render the nginx config, nginx -t, reload, verify", writes=True,
           palette="Reload nginx"),
    Action("vrm.benchmark", "benchmark", "b", "Bench",
           "Quick rust vs typescript benchmark with live progress", writes=True,
           palette="Benchmark rust vs typescript"),
    Action("vrm.migration-pause", "migration_pause", "p", "Pause",
           "Pause or resume the running migration (the bake clock stops)", writes=True,
           show=False),
    Action("vrm.migration-promote", "migration_promote", "P", "Promote",
           "Promote the migration to its next step now (asks first)", writes=True,
           show=False),
    Action("vrm.migration-abort", "migration_abort", "X", "Abort",
           "Abort the migration and roll back (asks first)", writes=True, show=False),
    Action("vrm.parity-diff", "parity_diff", "d", "Diffs",
           "Parity: mismatch examples, typescript and rust side by side", show=False),
    Action("vrm.quit", "quit", "q", "Quit", "Leave vrm (the stack keeps running)"),
)
"""In footer order: the keys an operator must find at 80 columns come first."""

HOST_ROLLBACK = Action("vrm.host-rollback", "host_rollback", "h", "Roll back host",
                       "Fleet pane: roll the selected host back and hold it at rust 0 "
                       "(asks first; this host locally, another through etcd)", writes=True)
PANE_ACTIONS: tuple[Action, ...] = (HOST_ROLLBACK,)
"""Bound by a pane (the Fleet pane), not the dashboard: they act on the pane's selection."""

WRITE_ACTIONS = frozenset(a.action for a in (*ACTIONS, *PANE_ACTIONS) if a.writes)
BY_ACTION: Mapping[str, Action] = {a.action: a for a in (*ACTIONS, *PANE_ACTIONS)}


def bindings(priority_rollback: bool = True) -> list[Binding]:
    """Every action's binding. With `priority_rollback`, rollback runs before any screen,
    modal or the command palette sees the key (the app's); without, it is only listed (the
    dashboard's footer, whose order starts with it)."""
    return [binding(a, priority=priority_rollback and a.id == ROLLBACK_ID) for a in ACTIONS]


def binding(a: Action, priority: bool = False) -> Binding:
    return Binding(a.keys, a.action, a.label, show=a.show, key_display=a.key_display,
                   id=a.id, tooltip=a.tooltip, priority=priority)


def app_bindings() -> list[Binding]:
    """The app's own: rollback above everything, and ctrl+q."""
    rollback = next(b for b in bindings() if b.id == ROLLBACK_ID)
    return [rollback,  # shown where it replaces the dashboard's (same place in the footer)
            Binding("ctrl+q", "quit", "Quit", show=False, priority=True)]


def keymap(wanted: Mapping[str, str]) -> dict[str, str]:
    """A user keymap (binding id -> comma-separated keys) as the app applies it: rollback's
    entry is dropped (it stays on r / ctrl+r), and so is any key rollback owns."""
    rollback = set(ROLLBACK_KEYS.split(","))
    found: dict[str, str] = {}
    for binding_id, keys in wanted.items():
        if binding_id == ROLLBACK_ID:
            continue
        kept = [k.strip() for k in keys.split(",") if k.strip() and k.strip() not in rollback]
        if kept:
            found[binding_id] = ",".join(kept)
    return found
