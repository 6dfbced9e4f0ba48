"""Names that many modules share, as Literal types mypy checks: journal actions and results,
migration phases and steering controls. A typo in one of them is a type error, not a
record nobody's filter finds."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
           "ACTIVE_PHASES",
           "CONTROLS",
           "SPLIT_ACTIONS",
           "Action",
           "Control",
           "Phase",
           "Result",
]

Action = Literal["deploy", "rollback", "reload", "set-split", "migrate", "prepare", "up",
                 "down", "migration", "parity", "alert", "silence"]
"""A journal record's action: a traffic change, a lifecycle step, a migration event, or an
alert heard from Alertmanager (and the silences operators set on them)."""

SPLIT_ACTIONS: tuple[Action, ...] = ("deploy", "rollback", "set-split", "reload", "migrate")
"""The actions that change (or re-apply) the served split."""

Result = Literal["ok", "failed", "paused"]

Phase = Literal["applying", "baking", "paused", "done", "rolled-back", "aborted"]
ACTIVE_PHASES: tuple[Phase, ...] = ("applying", "baking", "paused")

Control = Literal["pause", "resume", "promote", "abort"]
CONTROLS: tuple[Control, ...] = get_args(Control)
