"""Following log files: the tail and the new lines meet without a gap or a repeat."""

from __future__ import annotations

import time
from pathlib import Path

from vrm_tui.system.logfiles import follow, last_lines, tail_once


def test_a_line_written_while_the_tail_is_shown_appears_once(tmp_path: Path) -> None:
    first, second = tmp_path / "error.log", tmp_path / "access.log"
    first.write_text("e1\ne2\n")
    second.write_text("a1\n")
    rounds = iter(range(3))
    lines = follow([first, second], 10, keep_going=lambda: next(rounds, None) is not None,
                   interval=0.0)
    seen = [next(lines)]  # the cursors are placed; the second file's tail is not read yet
    with second.open("a") as handle:
        handle.write("a2\n")
    seen.extend(lines)
    assert seen == ["error.log: e1", "error.log: e2", "access.log: a1", "access.log: a2"]


def test_tail_once_merges_files_by_time(tmp_path: Path) -> None:
    """`vrm logs -n N` of the proxy: error and access log lines in the order they happened."""
    error = tmp_path / "proxy-error.log"
    access = tmp_path / "proxy-access.log"
    t0 = time.mktime((2026, 11, 26, 9, 0, 0, 0, 0, -1))
    error.write_text("2026/11/26 09:00:01 [notice] 1#1: reload\n"
                     "2026/11/26 09:00:03 [emerg] 1#1: bind() failed\n")
    access.write_text(f'{{"msec":{t0 + 2:.3f},"uri":"/a"}}\n{{"msec":{t0 + 4:.3f},"uri":"/b"}}\n')
    lines = list(tail_once([error, access], 3))
    assert [line.split(": ", 1)[0] for line in lines] == [
        "proxy-access.log", "proxy-error.log", "proxy-access.log"]
    assert "bind() failed" in lines[1] and '"/b"' in lines[2]


def test_last_lines_since_an_offset_read_the_end_not_the_middle(tmp_path: Path) -> None:
    # A backend that wrote 100 KB before dying: the start error showed lines from the middle of
    # its log (the first 64 KB after the start), not the fatal line at the end.
    log = tmp_path / "vision-manager-rust.log"
    log.write_text("an earlier run's last words\n")
    since = log.stat().st_size
    with log.open("a") as handle:
        handle.writelines(f"loading shard {n}\n" for n in range(8000))
        handle.write("FATAL: CUDA out of memory\n")
    assert last_lines(log, 2, since=since) == ["loading shard 7999", "FATAL: CUDA out of memory"]
    with log.open("w") as handle:
        handle.write("an earlier run's last words\nstarting\n")
    assert last_lines(log, 3, since=since) == ["starting"]  # nothing from before `since`
