"""Questions that wait for what their askers have seen: read your writes, for everyone.

The copies of requests and results reach the controller's actors a moment after the clients
have them (the task's path never waits for them). So a question to the task database or the
Hub is not answered at once: it names what its client holds that the controller has not
confirmed (`Question.known`, `Question.finished`), and it waits until its actor holds that;
and the engines of the tasks it is about say which of them they answered (`Answered`), since
another client may hold those results.

Order: a question is queued to its actor behind the events told to it before it was read (a
tell to itself), then considered again after each event and now and then, until its actor
holds what it must or `HELD_WAIT` passed (answered then, with a warning).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actorcluster.actors.messages import Answered, Question, ReportNow
from actorcluster.transport import Later, ReplyFuture, SocketActor

__all__ = ["HELD_WAIT", "NAMED_WAIT", "Consider", "Questions", "Recheck", "Waiting"]

logger = logging.getLogger(__name__)

HELD_WAIT = 5.0  # seconds a question waits for what its asker holds (its copies are on their way)
NAMED_WAIT = 1.0  # ... for an unknown msg_id it names (another client's, just submitted?)


@dataclass(eq=False)
class Waiting:
    """A question being answered, and what it waits for."""

    ask: Question
    later: Later
    named: tuple[str, ...]  # msg_ids it names
    until: float
    named_until: float
    fences: int = 0  # engines asked what they answered, that have not said yet
    fenced: set[str] = field(default_factory=set)  # the msg_ids they were asked of
    answered: set[str] = field(default_factory=set)  # ... those they answered


@dataclass(frozen=True)
class Consider:
    """Queued to itself by an actor: consider `waiting` after what was told before it."""

    waiting: Waiting


@dataclass(frozen=True)
class Recheck:
    """Timer: a waiting question may be due."""


class Questions:
    """The questions one actor answers once it holds what their askers have seen.

    Args:
        actor: the actor that answers (its thread runs everything here).
        ready: whether the actor holds what a question waits for (besides its fences).
        answer: the answer to a question, now.
        fence: which of the tasks a question is about may have been answered, by the node
            of their engine (asked at once, and again for those that become known).
    """

    def __init__(
        self,
        actor: SocketActor,
        *,
        ready: Callable[[Waiting], bool],
        answer: Callable[[Waiting], Any],
        fence: Callable[[Waiting], Mapping[str, Sequence[str]]],
    ) -> None:
        self.actor = actor
        self.reporters: tuple[str, ...] = ()  # relay, scheduler: they batch what they report
        self._ready, self._answer, self._fence = ready, answer, fence
        self._waiting: list[Waiting] = []

    def ask(self, ask: Question, named: tuple[str, ...] = ()) -> Later:
        """What the actor's handler returns for `ask`: answered later, in order."""
        now = time.monotonic()
        waiting = Waiting(ask, Later(), named, now + HELD_WAIT, now + NAMED_WAIT)
        self.actor.actor_ref.tell(Consider(waiting))
        return waiting.later

    def handle(self, message: Any) -> bool:
        """Serve `Consider` and `Recheck` (the actor passes them on); False for others."""
        match message:
            case Consider(waiting=waiting):
                self._consider(waiting)
            case Recheck():
                self.recheck()
                if self._waiting:
                    self.actor.call_later(NAMED_WAIT / 10, Recheck())
            case _:
                return False
        return True

    def recheck(self) -> None:
        """Answer the waiting questions that are due (call after events)."""
        waiting, self._waiting = self._waiting, []
        for question in waiting:
            if self._due(question):
                self._reply(question)
            else:
                self._waiting.append(question)

    def _consider(self, waiting: Waiting) -> None:
        if self._due(waiting):
            self._reply(waiting)
            return
        if not self._waiting:
            for reporter in self.reporters:  # what they hold back for a moment: now
                self.actor.send(reporter, ReportNow())
            self.actor.call_later(NAMED_WAIT / 10, Recheck())
        self._waiting.append(waiting)

    def _due(self, waiting: Waiting) -> bool:
        if time.monotonic() >= waiting.until:
            logger.warning(
                "answering a %s without all its asker has seen after %.0f s",
                type(waiting.ask).__name__,
                HELD_WAIT,
            )
            return True
        self._ask_engines(waiting)  # (tasks may have become known, or been assigned)
        return not waiting.fences and self._ready(waiting)

    def _ask_engines(self, waiting: Waiting) -> None:
        """Ask the engines of the tasks `waiting` is about which of them they answered."""
        for node, msg_ids in self._fence(waiting).items():
            new = tuple(m for m in msg_ids if m not in waiting.fenced)
            if not new:
                continue
            waiting.fenced.update(new)
            waiting.fences += 1
            reply = self.actor.port.ask(node, "engine", Answered(msg_ids=new), NAMED_WAIT)
            reply.add_done_callback(functools.partial(self._fenced, waiting))

    def _fenced(self, waiting: Waiting, reply: ReplyFuture) -> None:
        waiting.fences -= 1
        try:
            waiting.answered.update(reply.get(timeout=0))
        except Exception as e:  # noqa: BLE001 - gone or silent: its tasks fail otherwise
            logger.debug("an engine did not say what it answered: %r", e)
        if waiting in self._waiting:
            self.recheck()

    def _reply(self, waiting: Waiting) -> None:
        try:
            waiting.later.answer(self._answer(waiting))
        except Exception as e:  # noqa: BLE001 - answered, as any handler's error would be
            logger.warning("%s failed on %s: %r", self.actor.name, type(waiting.ask).__name__, e)
            waiting.later.fail(e)
