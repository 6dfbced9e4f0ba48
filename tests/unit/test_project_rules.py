"""Rules the project holds itself to, checked on every run."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_textual_is_imported_only_under_vrm_tui_tui() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+textual", re.MULTILINE)
    leaks = [p.relative_to(ROOT) for p in (ROOT / "vrm_tui").rglob("*.py")
             if "tui" not in p.relative_to(ROOT / "vrm_tui").parts[:1]
             and pattern.search(p.read_text())]
    assert not leaks, f"textual imported outside vrm_tui/tui/: {leaks}"


def test_exceptions_live_in_core_errors() -> None:
    """One module draws the exception hierarchy (issue 21): a class deriving from an
    exception anywhere else in the package is a second place to look for exit codes."""
    def exceptional(base: ast.expr) -> bool:
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        return name.endswith(("Error", "Exception", "Failure")) or name in {
            "BadInput", "Failure", "StackError", "VrmError", "ProxyUnreachable"}

    errors = ROOT / "vrm_tui" / "core" / "errors.py"
    below_core = ROOT / "vrm_tui" / "system"  # the one layer core imports: its OSErrors stay
    strays = [f"{p.relative_to(ROOT)}:{node.lineno} {node.name}"
              for p in (ROOT / "vrm_tui").rglob("*.py")
              if p != errors and below_core not in p.parents
              for node in ast.walk(ast.parse(p.read_text()))
              if isinstance(node, ast.ClassDef) and any(map(exceptional, node.bases))]
    assert not strays, f"exception classes outside vrm_tui/core/errors.py: {strays}"


def test_ruff_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", str(ROOT)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_parse() -> None:
    for script in (ROOT / "scripts").glob("*.sh"):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script.name}: {result.stderr}"


def test_layers_hold() -> None:
    """import-linter: imports point down only (DESIGN.md "Layers"); textual only in tui/."""
    result = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_mypy_is_clean() -> None:
    """Type hints are checked, strict for the whole package and the tests (pyproject)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True and {"vrm_tui", "tests"} <= set(config["files"])
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_the_cli_imports_only_what_a_rollback_needs() -> None:
    """`vrm rollback` has 150 ms in all (issue 14): loading the CLI must not pull in the TUI,
    YAML, the stdlib HTTP client (and `email`, `ssl` behind it) or the rehearsal server."""
    heavy = ("textual", "yaml", "http.client", "email", "ssl", "aiohttp", "asyncio",
             "vrm_tui.tui", "vrm_tui.rehearsal", "vrm_tui.migrate", "vrm_tui.parity")
    code = ("import sys, vrm_tui.cli, vrm_tui.console; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} "
            f"or any(m == h or m.startswith(h + '.') for h in {heavy!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]", result.stdout
