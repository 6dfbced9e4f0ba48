"""scripts/compose-base.sh names no mirror of its own (it reads the host's apt sources), and
scripts/test.sh stops the Docker engine it started, only that one. No engine needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import REPO

BASE = REPO / "scripts" / "compose-base.sh"


def _mirror(apt_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(BASE), "--mirror"], capture_output=True, text=True,
                          timeout=30, check=False, env={**os.environ, "VRM_APT_DIR": str(apt_dir)})


def test_the_mirror_comes_from_deb822_sources_for_the_suite(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a-security.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: bookworm-security\n"
        "Components: main\n\n"
        "# a disabled one for the suite\nTypes: deb\nURIs: http://off.invalid/debian\n"
        "Suites: bookworm\nEnabled: no\n\n"
        "Types: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\n")
    (tmp_path / "sources.list.d" / "b-main.sources").write_text(
        "Types: deb\n# a comment inside\nURIs: http://mirror.invalid/debian "
        "http://second.invalid/debian\nSuites: bookworm bookworm-updates\nComponents: main\n")
    (tmp_path / "sources.list.d" / "c.list.disabled").write_text(
        "deb http://disabled.invalid/debian bookworm main\n")
    found = _mirror(tmp_path)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "http://mirror.invalid/debian"


def test_a_one_line_sources_list_wins_over_later_files(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb-src http://src.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://local.invalid/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "x.sources").write_text(
        "Types: deb\nURIs: http://later.invalid/debian\nSuites: bookworm\n")
    found = _mirror(tmp_path)
    assert found.stdout.strip() == "http://local.invalid/debian", found.stderr


def test_no_source_for_the_suite_is_one_clear_line_and_exit_1(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "node.sources").write_text(
        "Types: deb\nURIs: https://node.invalid/node_20.x\nSuites: nodistro\n")
    found = _mirror(tmp_path)
    assert found.returncode == 1 and found.stdout == ""
    assert found.stderr.count("\n") == 1 and "no apt source for Debian bookworm" in found.stderr
    assert str(tmp_path) in found.stderr


def test_the_project_names_no_mirror_host() -> None:
    text = BASE.read_text()
    assert "debian.org" not in text and "http://" not in text.replace("http://mirror", "")


def _shims(folder: Path, engine_up: bool) -> None:
    """`docker` answers `info` once the shim engine runs; `dockerd` runs until TERM."""
    folder.mkdir()
    marker = folder / "engine-running"
    if engine_up:
        marker.write_text("already\n")
    (folder / "docker").write_text(
        f"#!/bin/sh\n[ \"$1\" = info ] && {{ [ -f {marker} ]; exit $?; }}\n"
        "[ \"$1\" = version ] && { echo shim; exit 0; }\nexit 0\n")
    (folder / "dockerd").write_text(
        f"#!/bin/sh\necho $$ > {marker}\ntrap 'rm -f {marker}; exit 0' TERM\n"
        "while :; do sleep 0.2; done\n")
    for name in ("docker", "dockerd"):
        (folder / name).chmod(0o755)


def _test_sh(shims: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}",
           "VRM_DOCKERD_LOG": str(shims / "dockerd.log")}
    return subprocess.run(["bash", str(REPO / "scripts" / "test.sh"), "--version"],
                          capture_output=True, text=True, timeout=600, check=False, env=env)


def test_test_sh_stops_the_engine_it_started(tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    _shims(shims, engine_up=False)
    run = _test_sh(shims)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "starting dockerd" in run.stderr and "stopping the Docker engine" in run.stderr
    assert not (shims / "engine-running").exists(), "the engine test.sh started still runs"


def test_test_sh_leaves_an_engine_it_found_running(tmp_path: Path) -> None:
    shims = tmp_path / "bin"
    _shims(shims, engine_up=True)
    run = _test_sh(shims)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "stopping the Docker engine" not in run.stderr
    assert (shims / "engine-running").read_text() == "already\n"
