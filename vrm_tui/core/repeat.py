"""Which requests are safe to repeat: one declaration for nginx's retries, parity's
replays and benchmarks.

Two defaults used to disagree: parity.yaml replayed `POST /process` three times a sample as
side-effect free, while the retry default treated it as unsafe for external backends. Now
GET and HEAD are safe, and any other request only when `configs/routes.yaml` (the
deployment's own, else vrm's) lists its route; the rehearsal backends add theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vrm_tui.core.errors import RepeatError
from vrm_tui.core.paths import CONFIGS

__all__ = ["SAFE_METHODS", "RepeatError", "SafeToRepeat", "declaration_files", "load"]

SAFE_METHODS = frozenset({"GET", "HEAD"})
_ROUTE = re.compile(r"([A-Z]+) (/[^\s?#]*)")


@dataclass(frozen=True)
class SafeToRepeat:
    """GET/HEAD, plus the routes declared safe (method, exact path)."""

    declared: frozenset[tuple[str, str]] = frozenset()
    sources: tuple[str, ...] = ()

    def allows(self, method: str, path: str) -> bool:
        method = method.upper()
        return method in SAFE_METHODS or (method, path.split("?", 1)[0]) in self.declared


def declaration_files(deploy_dir: Path, rehearsal: bool) -> list[Path]:
    """The deployment's `configs/routes.yaml` (else vrm's), and the rehearsal backends'."""
    own = deploy_dir / "configs" / "routes.yaml"
    files = [own if own.is_file() else CONFIGS / "routes.yaml"]
    if rehearsal:
        files.append(CONFIGS / "rehearsal" / "routes.yaml")
    return files


def load(deploy_dir: Path, rehearsal: bool) -> SafeToRepeat:
    """Read and check the declaration; RepeatError (exit 2) names the file and entry."""
    declared: set[tuple[str, str]] = set()
    sources = []
    for path in declaration_files(deploy_dir, rehearsal):
        declared |= _read(path)
        sources.append(str(path))
    return SafeToRepeat(frozenset(declared), tuple(sources))


def _read(path: Path) -> set[tuple[str, str]]:
    from vrm_tui.core import yamlfile  # here, not at import: `vrm rollback` never reads it

    data: Any = yamlfile.load(path, RepeatError)
    data = data or {}
    if not isinstance(data, dict) or set(data) - {"safe_to_repeat"}:
        raise RepeatError(f"{path}: expected one key, safe_to_repeat: a list of "
                          "'METHOD /path'")
    entries = data.get("safe_to_repeat") or []
    if not isinstance(entries, list):
        raise RepeatError(f"{path}: safe_to_repeat: expected a list of 'METHOD /path'")
    found = set()
    for i, entry in enumerate(entries):
        match = _ROUTE.fullmatch(entry) if isinstance(entry, str) else None
        if match is None:
            raise RepeatError(f"{path}: safe_to_repeat[{i}]={entry!r}: expected "
                              "'METHOD /exact/path', e.g. 'POST /api/v1/vision/process'")
        found.add((match.group(1), match.group(2)))
    return found
