"""The steering queue (issue 19 item 3) and the guard's heartbeat (issue 19 item 4, issue 22
item 5), against real files in a temporary state dir."""

from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path

import pytest

from tests.fullfs import fill, small_tmpfs
from vrm_tui.core.names import Control
from vrm_tui.core.paths import StateDir
from vrm_tui.migrate.control import Answer, ControlQueue, Request, settle, triage
from vrm_tui.migrate.plan import Plan
from vrm_tui.migrate.state import (
    CLAIM_TIMEOUT_S,
    HEARTBEAT_BYTES,
    Heartbeat,
    MigrationState,
    StateStore,
)


def _request(control: Control, at: float, who: str = "op") -> Request:
    return Request(control, who, at, f"{control}-{at}")


def _outcomes(answers: list[Answer]) -> dict[str, str]:
    return {a.id: a.outcome for a in answers}


# --- precedence ------------------------------------------------------------------------------

@pytest.mark.parametrize("loser", ["pause", "resume", "promote"])
def test_abort_supersedes_everything_asked_in_the_same_tick(loser: Control) -> None:
    act, answers = triage([_request(loser, 2.0), _request("abort", 1.0, "alice"),
                           _request(loser, 0.5)])
    assert [r.control for r, _ in act] == ["abort"]
    assert all(a.outcome == "superseded" and "abort abort-1.0 (alice)" in a.detail
               for a in answers) and len(answers) == 2


def test_pause_beats_resume_and_promote() -> None:
    act, answers = triage([_request("promote", 1.0), _request("resume", 2.0),
                           _request("pause", 3.0)])
    assert [r.control for r, _ in act] == ["pause"]
    assert _outcomes(answers) == {"promote-1.0": "superseded", "resume-2.0": "superseded"}


def test_resume_and_promote_both_apply_resume_first() -> None:
    act, answers = triage([_request("promote", 1.0), _request("resume", 2.0)])
    assert [r.control for r, _ in act] == ["resume", "promote"] and not answers


def test_a_duplicate_shares_the_answer_of_the_first() -> None:
    with_queue = ControlQueue(Path("/nonexistent/queue"))  # answers that cannot be written
    requests = [_request("pause", 1.0), _request("pause", 2.0)]
    answers = settle(with_queue, requests,
                     lambda r: Answer(r.id, r.control, "applied", "paused"))
    assert _outcomes(answers) == {"pause-1.0": "applied", "pause-2.0": "applied"}


# --- the queue -------------------------------------------------------------------------------

def test_every_request_is_kept_and_answered_by_id(tmp_path: Path) -> None:
    queue = ControlQueue(tmp_path / "q")
    asked = [queue.ask(control, "op") for control in ("promote", "abort", "pause")]
    assert len({r.id for r in asked}) == 3
    assert [r.id for r in queue.pending()] == [r.id for r in asked]
    settle(queue, queue.pending(), lambda r: Answer(r.id, r.control, "applied", "done"))
    assert queue.pending() == []
    answers = {r.control: queue.answered(r.id) for r in asked}
    assert answers["abort"] is not None and answers["abort"].applied
    assert answers["promote"] is not None and answers["promote"].outcome == "superseded"
    assert answers["pause"] is not None and "superseded by abort" in answers["pause"].detail
    assert queue.answered(asked[0].id) is None, "an answer is read once"


def test_refuse_all_answers_what_is_left(tmp_path: Path) -> None:
    queue = ControlQueue(tmp_path / "q")
    request = queue.ask("promote", "op")
    queue.refuse_all("migration x already done")
    answer = queue.answered(request.id)
    assert answer is not None and answer.outcome == "not-applied" and queue.pending() == []


class _ToyGuard:
    """The guard's drain loop (`settle` on every tick) over a tiny state machine, so the race
    runs many rounds in a second; the real guard is driven in tests/integration."""

    def __init__(self, queue: ControlQueue) -> None:
        self.queue = queue
        self.phase = "baking"
        self.step = 0
        self.log: list[str] = []
        self.stop = threading.Event()

    def act(self, request: Request) -> Answer:
        def answer(applied: bool, detail: str) -> Answer:
            return Answer(request.id, request.control,
                          "applied" if applied else "not-applied", detail)

        if self.phase == "aborted":
            return answer(False, "already aborted")
        self.log.append(request.control)
        if request.control == "abort":
            self.phase = "aborted"
        elif request.control == "pause":
            self.phase = "paused"
        elif request.control == "resume":
            self.phase = "baking"
        else:
            self.step += 1
        return answer(True, request.control)

    def run(self) -> None:
        while not self.stop.is_set():
            requests = self.queue.pending()
            if requests:
                settle(self.queue, requests, self.act)
            self.stop.wait(0.002)


def _race(queue: ControlQueue, guard: _ToyGuard, rival: Control,
          delay: float) -> dict[str, Answer | None]:
    """abort and `rival` asked at once (the rival `delay` later), each answer awaited."""
    start = threading.Barrier(2)
    asked: dict[str, Request] = {}

    def ask(control: Control, after: float) -> None:
        start.wait()
        if after:
            time.sleep(after)  # `abort & sleep 0.01; promote &`, shorter
        asked[control] = queue.ask(control, control)

    askers = [threading.Thread(target=ask, args=("abort", 0.0)),
              threading.Thread(target=ask, args=(rival, delay))]
    for t in askers:
        t.start()
    for t in askers:
        t.join()
    return {c: queue.wait(r.id, timeout=10) for c, r in asked.items()}


@pytest.mark.parametrize("rival", ["promote", "pause"])
def test_abort_always_wins_a_race_and_every_request_is_answered(tmp_path: Path,
                                                                rival: Control) -> None:
    for round_ in range(50):
        queue = ControlQueue(tmp_path / f"q{round_}")
        guard = _ToyGuard(queue)
        thread = threading.Thread(target=guard.run)
        thread.start()
        try:
            answers = _race(queue, guard, rival, 0.0005 * (round_ % 4))
        finally:
            guard.stop.set()
            thread.join()
        abort, other = answers["abort"], answers[rival]
        assert abort is not None and abort.applied, (round_, abort)
        assert other is not None, f"round {round_}: {rival} got no answer"
        assert guard.phase == "aborted", (round_, guard.log)
        assert guard.log[-1] == "abort", f"round {round_}: {rival} after the abort {guard.log}"
        if other.outcome == "applied":  # only when it landed a tick before the abort
            assert guard.log == [rival, "abort"], (round_, guard.log)
        assert queue.pending() == []


# --- the heartbeat ---------------------------------------------------------------------------

def _state(started: float | None = None) -> MigrationState:
    state = MigrationState(plan=Plan().to_dict())
    if started is not None:
        state.started = started
    return state


def test_a_beat_counts_only_for_its_migration(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    old, new = _state(), _state()
    store.beat(old.id)
    assert store.last_beat(old.id) is not None
    assert store.last_beat(new.id) is None, "the previous migration's beat never counts"
    new.claim()
    assert not store.guarded(new), "its guard has not beaten for it yet"
    store.beat(new.id)
    assert store.guarded(new)
    store.heartbeat.close()


def test_a_new_migration_is_not_unguarded_while_its_guard_takes_over(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.beat("previous")
    assert store.guarded(_state())
    assert not store.guarded(_state(started=time.time() - CLAIM_TIMEOUT_S - 1)), \
        "a guard that never came is UNGUARDED"
    store.heartbeat.close()


def test_the_heartbeat_is_written_in_place_at_a_fixed_size(tmp_path: Path) -> None:
    path = StateDir(tmp_path).migration_heartbeat
    beat = Heartbeat(path)
    beat.beat("abc")
    inode = path.stat().st_ino
    beat.beat("abc")
    assert path.stat().st_ino == inode and path.stat().st_size == HEARTBEAT_BYTES
    assert json.loads(path.read_text())["migration"] == "abc"
    beat.close()


# --- a full disk (a real tmpfs) ----------------------------------------------------------------

def test_a_full_disk_stops_no_beat_and_refuses_requests_in_one_error(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "state", size="1m") as root:
        store = StateStore(root)
        state = _state()
        store.save(state)
        store.heartbeat.open()  # what the guard does at its start
        store.beat(state.id)
        fill(root)
        with pytest.raises(OSError) as full:
            store.save(state)
        assert full.value.errno == errno.ENOSPC
        before = store.last_beat(state.id)
        store.beat(state.id)
        assert store.heartbeat.error == ""
        after = store.last_beat(state.id)
        assert before is not None and after is not None and after > before
        assert store.guarded(state) or state.owner_pid is None
        with pytest.raises(OSError):
            store.request("abort", "op")
        assert store.queue.pending() == [], "no half-written request is left"
        store.heartbeat.close()
        late = Heartbeat(root / "never-allocated")
        late.beat(state.id)  # never raises: the error is kept
        assert "No space left" in late.error
