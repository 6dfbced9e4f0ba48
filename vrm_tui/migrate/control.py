"""Steering a running migration: a queue of requests, each of which gets an answer.

Every request (pause, resume, promote, abort) is its own file in the state dir's
`migration-requests/` folder, so two operators asking at once never overwrite each other
(one shared slot once lost an abort behind a promote sent 10 ms later). The guard drains the
whole queue on every tick and decides by precedence:

- **abort** beats everything: the other requests of the tick are superseded by it.
- **pause** beats resume and promote: two people who disagree within one tick leave the
  migration holding still (the safe side); whoever wanted to go on asks again.
- **resume** is pause's opposite and ranks with promote: with no pause in the tick, a resume
  and a promote both apply (resume first).

The same control asked twice in one tick is carried out once; the duplicate gets the same
answer. Each request's answer (`applied`, `superseded` by which request, or `not-applied` and
why) is written beside it by id, so the face that asked can say what became of it.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

from vrm_tui.core.names import CONTROLS, Control
from vrm_tui.system.files import write_atomic

__all__ = ["Answer", "ControlQueue", "Outcome", "Request", "settle", "triage"]

Outcome = Literal["applied", "superseded", "not-applied"]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
STALE_ANSWER_S = 3600.0
"""An answer nobody fetched (the asking command went away) is removed after this long."""


@dataclass(frozen=True)
class Request:
    """A steering request: what, who asked, when, and its id (the answer's name)."""

    control: Control
    operator: str
    at: float
    id: str = ""


@dataclass(frozen=True)
class Answer:
    """What became of one request."""

    id: str
    control: Control
    outcome: Outcome
    detail: str

    @property
    def applied(self) -> bool:
        return self.outcome == "applied"

    @property
    def text(self) -> str:
        return f"{self.control} {self.id}: {self.outcome}: {self.detail}"


def triage(requests: list[Request]) -> tuple[list[tuple[Request, list[Request]]], list[Answer]]:
    """One tick's requests by precedence: what to carry out, in order, each with the
    duplicates that share its answer, and the answers of those superseded."""
    ordered = sorted(requests, key=lambda r: (r.at, r.id))
    by: dict[Control, list[Request]] = {c: [r for r in ordered if r.control == c]
                                        for c in CONTROLS}
    for winner_control in ("abort", "pause"):
        if by[winner_control]:
            winner, *same = by[winner_control]
            why = f"superseded by {winner.control} {winner.id} ({winner.operator or 'someone'})"
            lost = [Answer(r.id, r.control, "superseded", why) for r in ordered
                    if r.control != winner_control]
            return [(winner, same)], lost
    return [(group[0], group[1:]) for group in (by["resume"], by["promote"]) if group], []


def settle(queue: ControlQueue, requests: list[Request],
           act: Callable[[Request], Answer]) -> list[Answer]:
    """Carry out `requests` by precedence with `act`, answer every one of them, and take
    them off the queue. An answer that cannot be written (a full disk) is skipped: steering
    goes on, and the asking command says it got none."""
    plan, answers = triage(requests)
    for request, same in plan:
        answer = act(request)
        answers.append(answer)
        answers.extend(Answer(r.id, r.control, answer.outcome,
                              f"{answer.detail} (asked also as {request.id})") for r in same)
    for answer in answers:
        with contextlib.suppress(OSError):
            queue.answer(answer)
    for request in requests:
        queue.done(request)
    return answers


class ControlQueue:
    """The state dir's steering queue (`StateDir.migration_requests`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def ask(self, control: Control, operator: str) -> Request:
        """Queue a request; its id names the answer to wait for. OSError when it cannot be
        written (a full disk)."""
        if control not in CONTROLS:
            raise ValueError(f"unknown migration control {control!r}")
        request = Request(control, operator, time.time(),
                          f"{time.time_ns():x}-{uuid.uuid4().hex[:6]}")
        write_atomic(self.folder / f"{request.id}.request", json.dumps(asdict(request)),
                     mode=0o600)
        return request

    def pending(self) -> list[Request]:
        """Every queued request, oldest first; an unreadable one is dropped."""
        found: list[Request] = []
        try:
            paths = sorted(self.folder.glob("*.request"))
        except OSError:
            return []
        for path in paths:
            try:
                data = json.loads(path.read_text())
                if data["control"] not in CONTROLS:
                    raise ValueError(data["control"])
                found.append(Request(data["control"], str(data.get("operator", "")),
                                     float(data["at"]), path.stem))
            except FileNotFoundError:
                continue
            except (OSError, ValueError, TypeError, KeyError):
                path.unlink(missing_ok=True)
        return sorted(found, key=lambda r: (r.at, r.id))

    def answer(self, answer: Answer) -> None:
        write_atomic(self.folder / f"{answer.id}.answer", json.dumps(asdict(answer)),
                     sync=False, mode=0o600)

    def done(self, request: Request) -> None:
        with contextlib.suppress(OSError):
            (self.folder / f"{request.id}.request").unlink(missing_ok=True)

    def answered(self, request_id: str) -> Answer | None:
        """The answer to `request_id` if it came (read once: the file is then removed)."""
        path = self.folder / f"{request_id}.answer"
        try:
            data = json.loads(path.read_text())
            answer = Answer(str(data["id"]), data["control"], data["outcome"],
                            str(data["detail"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError):
            return None  # half-written cannot happen (atomic); a broken one is no answer
        if answer.control not in CONTROLS or answer.outcome not in OUTCOMES:
            return None
        with contextlib.suppress(OSError):
            path.unlink()
        return answer

    def wait(self, request_id: str, timeout: float, poll: float = 0.05) -> Answer | None:
        """The answer to `request_id`, or None when none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.answered(request_id)
            if answer is not None or time.monotonic() >= deadline:
                return answer
            time.sleep(poll)

    def withdraw(self, request_id: str) -> bool:
        """Take back a request nobody answered; False if the guard already took it."""
        try:
            (self.folder / f"{request_id}.request").unlink()
        except OSError:
            return False
        return True

    def refuse_all(self, why: str) -> list[Answer]:
        """Answer every queued request `not-applied` (they arrived before the migration that
        is starting now, or after it ended), and drop answers nobody fetched."""
        requests = self.pending()
        answers = [Answer(r.id, r.control, "not-applied", why) for r in requests]
        for answer in answers:
            with contextlib.suppress(OSError):
                self.answer(answer)
        for request in requests:
            self.done(request)
        cutoff = time.time() - STALE_ANSWER_S
        with contextlib.suppress(OSError):
            for path in self.folder.glob("*.answer"):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()
        return answers
