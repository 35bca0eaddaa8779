"""Task events for the Hub and the DB writer, batched: the hot paths tell them at most
once per interval."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from actorcluster.actors.messages import (
    Request,
    SubmitTask,
    TaskLog,
    TaskResult,
    TasksFinished,
    TasksSubmitted,
)
from actorcluster.transport import Message, Received

__all__ = ["HubReport", "Nudge", "Teller"]


class Teller(Protocol):
    """Anything to tell a message: a pykka ActorRef here, a RemoteRef across processes."""

    def tell(self, message: Any) -> None: ...


@dataclass(frozen=True)
class Nudge:
    """A timer message that only wakes its actor, so it flushes what is due."""


class HubReport:
    """Collect (msg_id, engine, client|status) events and tell the Hub in batches; and,
    when there is a DB writer, the requests and results themselves for the task records.

    Telling the Hub wakes its thread: on a busy path, once per `interval` is plenty for
    `queue_status`, and leaves the CPU to the tasks.

    Args:
        hub: the Hub.
        balanced: whether the events are of load-balanced tasks.
        interval: seconds between reports while events keep coming.
        also: another receiver of the Hub's events.
        db: the DB writer (None: no task database).
        origin: where a message came from on the wire (`SocketActor.received_as`): the
            DB writer journals those bytes instead of pickling the message again.
    """

    def __init__(
        self,
        hub: Teller,
        *,
        balanced: bool,
        interval: float = 0.02,
        also: Teller | None = None,
        db: Teller | None = None,
        origin: Callable[[Message], Received | None] = lambda message: None,
    ) -> None:
        self.receivers = [hub] if also is None else [hub, also]
        self.balanced = balanced
        self.interval = interval
        self.db = db
        self.origin = origin
        self.submitted: list[tuple[str, int, str]] = []
        self.finished: list[tuple[str, int, str]] = []
        # for the DB writer (see `record_*`):
        self.requests: list[tuple[float, Request | SubmitTask, Received | None]] = []
        self.assigned: list[tuple[float, str, int]] = []
        self.results: list[tuple[float, TaskResult, Received | None]] = []
        self._last = 0.0
        self.nudge_pending = False

    def record_request(self, request: Request | SubmitTask) -> None:
        """For the task database: `request` arrived."""
        if self.db is not None:
            self.requests.append((time.time(), request, self.origin(request)))

    def record_assignment(self, msg_id: str, engine: int) -> None:
        """For the task database: the task `msg_id` went to `engine`."""
        if self.db is not None:
            self.assigned.append((time.time(), msg_id, engine))

    def record_result(self, result: TaskResult) -> None:
        """For the task database: the final result of a task."""
        if self.db is not None:
            self.results.append((time.time(), result, self.origin(result)))

    def flush(self, unassigned: int = 0, *, now: bool = False) -> bool:
        """Tell the Hub what happened if it is time (or `now`); return True if a nudge
        is needed later."""
        if not (self.submitted or self.finished or self.requests or self.results):
            return False
        clock = time.monotonic()
        due = now or clock - self._last >= self.interval
        if not due and len(self.submitted) + len(self.finished) < 4096:
            if self.nudge_pending:
                return False
            self.nudge_pending = True
            return True
        self._last = clock
        events: list[TasksSubmitted | TasksFinished] = []
        if self.submitted:
            events.append(
                TasksSubmitted(
                    tasks=tuple(self.submitted), balanced=self.balanced, unassigned=unassigned
                )
            )
            self.submitted = []
        if self.finished:
            events.append(
                TasksFinished(
                    tasks=tuple(self.finished), balanced=self.balanced, unassigned=unassigned
                )
            )
            self.finished = []
        for receiver in self.receivers:
            for event in events:
                receiver.tell(event)
        if self.db is not None and (self.requests or self.assigned or self.results):
            log = TaskLog(
                queue="task" if self.balanced else "mux",
                submitted=tuple(self.requests),
                assigned=tuple(self.assigned),
                finished=tuple(self.results),
            )
            self.requests, self.assigned, self.results = [], [], []
            self.db.tell(log)
        return False
