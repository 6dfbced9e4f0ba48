"""Following log files: the tail and the new lines meet without a gap or a repeat."""

from __future__ import annotations

from pathlib import Path

from vrm_tui.system.logfiles import follow


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
