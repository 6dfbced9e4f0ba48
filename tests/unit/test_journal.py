from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import cast

from vrm_tui.core.names import Action
from vrm_tui.journal import Journal, Record, operator_identity


def test_operator_is_user_and_ssh_client_address() -> None:
    assert operator_identity({"USER": "alice"}) == "alice"
    assert operator_identity({"USER": "alice", "SSH_CLIENT": "192.0.2.9 50000 22"}) \
        == "alice@192.0.2.9"
    assert operator_identity({"USER": "root", "SUDO_USER": "bob",
                              "SSH_CONNECTION": "2001:db8::1 1 2001:db8::2 22"}) \
        == "bob@2001:db8::1"


def test_records_round_trip_and_read_from_an_offset(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append(Record(action="deploy", result="ok", from_={"rust": 10}, to={"rust": 50}))
    records, offset = journal.read_from(0)
    assert [r.to for r in records] == [{"rust": 50}] and records[0].from_ == {"rust": 10}
    with open(journal.path, "a") as handle:
        handle.write('{"action": "rollback", "res')  # a writer mid-append
    assert journal.read_from(offset) == ([], offset)
    with open(journal.path, "a") as handle:
        handle.write('ult": "ok"}\nnot json\n')
    more, _ = journal.read_from(offset)
    assert [r.action for r in more] == ["rollback"]


def _write_many(path: str, tag: int) -> None:
    journal = Journal(Path(path))
    for i in range(200):
        journal.append(Record(action=cast(Action, f"a{tag}"), result="ok", detail="x" * (i % 50)))


def test_concurrent_writers_never_interleave_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "j.jsonl")
    procs = [multiprocessing.Process(target=_write_many, args=(path, n)) for n in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    lines = Path(path).read_text().splitlines()
    assert len(lines) == 800
    assert len(Journal(Path(path)).read()) == 800
