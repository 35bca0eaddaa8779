"""The task scheduler: engines as a load-balanced pool.

Tasks wait in one queue until an engine allowed for them has room (fewer than `hwm`
tasks outstanding); a scheme picks among those engines. A result frees its engine's slot
and goes to the client; a failed task with retries left runs again on another engine,
as does every task stranded on an engine that died.

A blocking call may be placed by its client on an engine it saw idle (`Apply.placed`,
one hop fewer); the scheduler gets a copy and counts it as running there. The copy, the
engine's result and, if the engine was busy after all, its `Bounced`, come on different
connections: whichever comes first waits for the copy (`early`, `bounced`).

Order: an engine's result comes after the request the scheduler sent it (one connection
each way). An outcome the scheduler makes (abort, timeout, impossible dependency, engine
death, retries used up) is told to the database and the Hub before it leaves for its
client, so a question the client asks next sees it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from actorcluster.actors.bounded import remember
from actorcluster.actors.graph import TaskGraph
from actorcluster.actors.messages import (
    HWM,
    Abort,
    AbortTasks,
    Apply,
    Bounced,
    DependencySpec,
    EngineAdded,
    EngineDied,
    Hello,
    ReportNow,
    SubmitTask,
    TaskResult,
    TasksFinished,
    TasksSubmitted,
    not_run,
)
from actorcluster.actors.report import HubReport, Nudge, Teller
from actorcluster.actors.schemes import SCHEMES
from actorcluster.transport import Address, Session, SocketActor

from actorcluster.error import (
    DependencyTimeout,
    EngineError,
    ImpossibleDependency,
    InvalidDependency,
    TaskAborted,
)

__all__ = ["TaskScheduler"]

logger = logging.getLogger(__name__)

_EARLY_LIMIT = 10_000  # results and bounces of placed tasks kept waiting for their copy


@dataclass(frozen=True)
class _Expire:
    msg_id: str


@dataclass
class _Task:
    submit: SubmitTask
    retries: int
    excluded: set[int] = field(default_factory=set)
    engine: int = -1
    last: TaskResult | None = None
    after: DependencySpec | None = None
    follow: DependencySpec | None = None


class TaskScheduler(SocketActor):
    """Assigns tasks to engines and relays their results.

    Accepts: `SubmitTask` (or the copy of one its client placed) and `AbortTasks` from
    clients, `TaskResult` and `Bounced` from engines, `Hello`, `EngineAdded`/`EngineDied`
    from the Hub. Emits: requests to engines, `TaskResult` to clients,
    `TasksSubmitted`/`TasksFinished` to the Hub, `TaskLog` to the DB writer. Owns: a
    listening ROUTER.

    Args:
        session: the cluster's session.
        host: the interface to bind.
        hub: the Hub to tell what went where.
        scheme: a name in `SCHEMES`.
        hwm: tasks an engine may hold at once (0: no limit).
        db: the DB writer to record every task with (None: no task database).
    """

    verify_buffers = False  # payloads pass through unread; their users check them

    def __init__(
        self,
        session: Session,
        host: str,
        hub: Teller,
        *,
        scheme: str = "leastload",
        hwm: int = HWM,
        db: Teller | None = None,
        port: int = 0,
    ) -> None:
        if scheme not in SCHEMES:
            raise ValueError(f"unknown scheme {scheme!r}: choose one of {', '.join(SCHEMES)}")
        super().__init__(session, name="scheduler", listen=f"tcp://{host}:{port}")
        self.hub = hub
        self.scheme = SCHEMES[scheme]
        self.hwm = hwm
        self.engines: dict[int, str] = {}  # engine id -> its actor's node (control)
        self.executors: dict[int, tuple[str, str]] = {}  # -> where its requests go
        self.loads: dict[int, int] = {}
        self.used: dict[int, float] = {}
        self.queue: deque[_Task] = deque()
        self.blocked: list[_Task] = []
        self.graph = TaskGraph()
        self.running: dict[str, _Task] = {}
        self.early: dict[str, TaskResult] = {}  # of placed tasks, before their copy
        self.bounced: dict[str, None] = {}  # placed tasks sent back before their copy
        self.report = HubReport(hub, balanced=True, db=db, origin=self.received_as)

    def on_receive(self, message: Any) -> Any:
        match message:
            case SubmitTask(retries=retries, timeout=timeout, known=known):
                self.report.record_request(message)
                for msg_id, engine, status in known:
                    if status:
                        self.graph.finished(msg_id, engine, status == "ok")
                    else:
                        self.graph.submitted(msg_id)
                self.graph.submitted(message.request.msg_id)
                task = _Task(
                    message,
                    retries,
                    after=DependencySpec.of(message.after),
                    follow=DependencySpec.of(message.follow),
                )
                if timeout is not None:
                    self.call_later(timeout, _Expire(message.request.msg_id))
                if message.placed >= 0:
                    self._placed(task, message.placed)
                else:
                    self._admit(task)
                self._assign()
            case Bounced(msg_id=msg_id, engine=engine):
                self._bounced(msg_id, engine)
            case TasksSubmitted(tasks=tasks):  # direct tasks, from the relay
                for msg_id, _engine, _client in tasks:
                    self.graph.submitted(msg_id)
            case TasksFinished(tasks=tasks):
                for msg_id, engine, status in tasks:
                    self.graph.finished(msg_id, engine, status == "ok")
                self._unblock()
                self._assign()
            case _Expire(msg_id=msg_id):
                self._expire(msg_id)
            case TaskResult():
                self._result(message)
            case AbortTasks(msg_ids=msg_ids):
                self._abort(set(msg_ids))
            case Hello():
                return True
            case Nudge():
                self.report.nudge_pending = False
            case ReportNow():
                self.report.flush(len(self.queue), now=True)
            case EngineAdded(id=engine, node=node, executor=executor):
                self.engines[engine] = node
                # straight to the executor's socket: no hop through the engine actor
                self.executors[engine] = (executor, "executor") if executor else (node, "engine")
                self.loads[engine] = 0
                self.used[engine] = 0.0
                self._assign()
            case EngineDied(id=engine, reason=reason):
                self._engine_died(engine, reason)
        return None

    @property
    def unassigned(self) -> int:
        """Tasks waiting for an engine."""
        return len(self.queue)

    def _room(self, engine: int) -> bool:
        return self.hwm == 0 or self.loads[engine] < self.hwm

    def _assign(self) -> None:
        """Give waiting tasks to engines with room, in order; skip tasks that must wait."""
        if not self.queue or not self.engines or not any(self._room(e) for e in self.engines):
            return
        waiting: deque[_Task] = deque()
        while self.queue:
            task = self.queue.popleft()
            targets = task.submit.targets
            allowed = [
                e for e in (self.engines if targets is None else targets)
                if e in self.engines and e not in task.excluded
            ]  # fmt: skip
            where = self.graph.follow_engines(task.follow)
            if where is not None:
                allowed = [e for e in allowed if e in where]
            if not allowed:
                if task.last is not None:
                    self._to_client(task, task.last)  # failed on every engine it may use
                else:
                    waiting.append(task)  # its engines may still come
                continue
            free = [e for e in allowed if self._room(e)]
            if not free:
                waiting.append(task)
                if all(not self._room(e) for e in self.engines):
                    break  # every engine is full: nothing behind it can run either
                continue
            self._send(task, self.scheme(free, self.loads, self.used))
        self.queue.extendleft(reversed(waiting))  # before the rest, as they were (not a copy
        # of the rest: with thousands waiting, that cost O(queue) per result)

    def _send(self, task: _Task, engine: int) -> None:
        original = task.submit.request
        request = Apply(
            msg_id=original.msg_id,
            client=original.client,
            payload=original.payload,
            engine=engine,
            reply=self.address,
            direct=Address.dialable(original.client),  # a success goes straight back
            answer=original.answer,
        )  # not dataclasses.replace: this is the hot path
        self._run(task, engine)
        self.send_to(*self.executors[engine], request)

    def _placed(self, task: _Task, engine: int) -> None:
        """The copy of a task its client placed on `engine`: it runs there, unless the
        engine sent it back or is gone (then it is placed here), or it ran already."""
        msg_id = task.submit.request.msg_id
        early = self.early.pop(msg_id, None)
        came_back = msg_id in self.bounced
        self.bounced.pop(msg_id, None)
        if early is None and (came_back or engine not in self.engines):
            self._admit(task)
            return
        self._run(task, engine)
        if early is not None:
            self._result(early)

    def _bounced(self, msg_id: str, engine: int) -> None:
        """A placed task found its engine busy: place it, as any other."""
        task = self.running.get(msg_id)
        if task is None or task.engine != engine:
            remember(self.bounced, msg_id, None, _EARLY_LIMIT)  # before its copy
            return
        del self.running[msg_id]
        if engine in self.loads:
            self.loads[engine] -= 1
        self.report.finished.append((msg_id, engine, "moved"))
        self.report.flush(len(self.queue), now=True)  # before it is placed again, maybe there
        task.engine = -1
        self.queue.appendleft(task)
        self._assign()

    def _run(self, task: _Task, engine: int) -> None:
        """Count `task` as running on `engine`."""
        request = task.submit.request
        task.engine = engine
        self.running[request.msg_id] = task
        if engine in self.loads:  # (a placed task's result may outlive its engine)
            self.loads[engine] += 1
            self.used[engine] = time.monotonic()
        self.report.submitted.append((request.msg_id, engine, request.client))
        self.report.record_assignment(request.msg_id, engine)

    def _result(self, result: TaskResult) -> None:
        task = self.running.pop(result.msg_id, None)
        if task is None:
            if result.placed and result.msg_id not in self.graph.known:
                remember(self.early, result.msg_id, result, _EARLY_LIMIT)  # before its copy
            elif not result.direct and result.client:  # an engine cannot reach the client
                self.send_to(result.client, "client", result)
            else:
                logger.debug("result of unknown or already failed task %s", result.msg_id)
            return
        if task.engine in self.loads:
            self.loads[task.engine] -= 1
        self.report.finished.append((result.msg_id, result.engine, result.status))
        if result.status == "error" and getattr(result.error, "ename", None) == "UnmetDependency":
            # not this engine: try another, without using up a retry
            msg_id = result.msg_id
            task.last = not_run(msg_id, -1, "error", ImpossibleDependency(
                f"task {msg_id} has unmet dependencies on every engine it may use "
                f"(tried {sorted(task.excluded | {task.engine})}): {result.error}"
            ))  # fmt: skip
            task.excluded.add(task.engine)
            task.engine = -1
            self.queue.appendleft(task)
        elif result.status == "error" and task.retries > 0:
            task.last = result
            self._retry(task)
        else:
            self._to_client(task, result)
        self._assign()

    def _abort(self, msg_ids: set[str]) -> None:
        """Answer waiting tasks with `TaskAborted`; ask engines to drop the ones they hold."""
        aborted = [t for t in self.queue if t.submit.request.msg_id in msg_ids]
        if aborted:
            self.queue = deque(t for t in self.queue if t.submit.request.msg_id not in msg_ids)
        for task in aborted:
            msg_id = task.submit.request.msg_id
            error = TaskAborted(f"task {msg_id} was aborted before it ran")
            self._to_client(task, not_run(msg_id, -1, "aborted", error))
        by_engine: dict[int, list[str]] = {}
        for msg_id in msg_ids:
            held = self.running.get(msg_id)
            if held is not None:
                by_engine.setdefault(held.engine, []).append(msg_id)
        for engine, ids in by_engine.items():
            abort = Abort(
                msg_id=f"abort-{ids[0]}",
                client="",
                engine=engine,
                msg_ids=tuple(ids),
                reply=self.address,
            )
            self.send(f"actor://{self.engines[engine]}/engine", abort)

    def _admit(self, task: _Task) -> None:
        """Queue `task`, park it until its dependencies are met, or fail it if they never can be."""
        msg_id = task.submit.request.msg_id
        try:
            ready = self.graph.verdict(msg_id, task.after, task.follow)
        except (InvalidDependency, ImpossibleDependency) as e:
            self._to_client(task, not_run(msg_id, -1, "error", e))
            return
        (self.queue if ready else self.blocked).append(task)

    def _unblock(self) -> None:
        blocked, self.blocked = self.blocked, []
        for task in blocked:
            self._admit(task)

    def _expire(self, msg_id: str) -> None:
        for task in [*self.queue, *self.blocked]:
            if task.submit.request.msg_id == msg_id:
                (self.queue if task in self.queue else self.blocked).remove(task)
                timeout = task.submit.timeout
                error = DependencyTimeout(
                    f"task {msg_id} found no engine to run on within {timeout} s"
                )
                self._to_client(task, not_run(msg_id, -1, "error", error))
                return

    def _retry(self, task: _Task) -> None:
        task.retries -= 1
        task.excluded.add(task.engine)
        task.engine = -1
        self.queue.appendleft(task)

    def _engine_died(self, engine: int, reason: str) -> None:
        self.engines.pop(engine, None)
        self.executors.pop(engine, None)
        self.loads.pop(engine, None)
        self.used.pop(engine, None)
        for msg_id, task in list(self.running.items()):
            if task.engine != engine:
                continue
            del self.running[msg_id]
            self.report.finished.append((msg_id, engine, "error"))
            if task.retries > 0:
                self._retry(task)
            else:
                error = EngineError(f"engine {engine} died while running task {msg_id} ({reason})")
                self._to_client(task, not_run(msg_id, engine, "error", error))
        self._assign()

    def _to_client(self, task: _Task, result: TaskResult) -> None:
        """The task's final answer: tell its client, and let tasks that depend on it go on."""
        if not result.client:  # made here
            result = replace(result, client=task.submit.request.client)
        if task.engine < 0:  # never ran (aborted, timed out...): counted on no engine
            self.report.finished.append((result.msg_id, -1, result.status))
        self.graph.finished(result.msg_id, result.engine, result.status == "ok")
        self.report.record_result(result)
        if not result.direct:  # else the engine sent it to the client, and us a copy
            # the task database first: a question the client asks next finds it there
            self.report.flush(len(self.queue), now=True)
            self.send_to(task.submit.request.client, "client", result)
        if self.blocked:
            self._unblock()

    def flush(self) -> None:
        if self.report.flush(len(self.queue)):
            self.call_later(self.report.interval, Nudge())
        super().flush()

    def on_stop(self) -> None:
        self.report.flush(len(self.queue), now=True)  # the task database hears of everything
