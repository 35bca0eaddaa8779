"""The Hub: registration of engines and clients, notifications, and what runs where."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka
from actorcluster.actors.bounded import remember
from actorcluster.actors.messages import (
    ClientConfig,
    ConnectClient,
    EngineAdded,
    EngineConfig,
    EngineDied,
    EngineRegistered,
    EngineUnregistered,
    HeartFailed,
    Hello,
    HubStatus,
    QueueStatus,
    RegisterEngine,
    StopController,
    TasksFinished,
    TasksSubmitted,
)
from actorcluster.actors.questions import Consider, Questions, Recheck, Waiting
from actorcluster.transport import Publisher, Session, SocketActor

__all__ = ["EngineRecord", "Hub"]

logger = logging.getLogger(__name__)

_DONE_LIMIT = 100_000


@dataclass
class EngineRecord:
    """What the Hub knows of one engine."""

    id: int
    uuid: str
    node: str
    pid: int
    hostname: str
    registered: float
    executor: str = ""  # where its executor listens (requests may go straight there)
    queue: set[str] = field(default_factory=set)
    balanced: set[str] = field(default_factory=set)
    completed: int = 0
    pidfd: int | None = None


class Hub(SocketActor):
    """Registers engines and clients and keeps track of every request.

    Accepts: `RegisterEngine`, `ConnectClient`, `QueueStatus` (a `Question`: answered once
    the Hub heard of what its asker has seen), `HubStatus`, `StopController` (asks, from
    the network); `HeartFailed` (from the heart monitor), `TasksSubmitted`/`TasksFinished`
    (from the relays). Emits: `EngineAdded`/`EngineDied` to the relay and heart monitor,
    `EngineRegistered`/`EngineUnregistered` on its notification PUB, `Answered` (asks) to
    engines and `ReportNow` to the relays while a question waits. Owns: a listening
    ROUTER, the PUB, and a pidfd per engine of this host.

    Args:
        session: the cluster's session.
        host: the interface to bind.
        heartbeat_period: told to engines when they register.
        on_stop_requested: called by `StopController` once the engines were told to stop.
    """

    def __init__(
        self,
        session: Session,
        host: str,
        *,
        heartbeat_period: float = 1.0,
        on_stop_requested: Callable[[], None] | None = None,
        port: int = 0,
        notification_port: int = 0,
    ) -> None:
        super().__init__(session, name="hub", listen=f"tcp://{host}:{port}")
        self.publisher = Publisher(session, host, port=notification_port)
        self.engine_heartbeat = heartbeat_period
        self.engines: dict[int, EngineRecord] = {}
        self.by_uuid: dict[str, EngineRecord] = {}
        self.tasks: dict[str, int] = {}
        self.done: dict[str, None] = {}  # the last tasks finished (questions may name them)
        self.unassigned = 0
        self.questions = Questions(self, ready=self._ready, answer=self._answer, fence=self._fence)
        self.started = time.time()
        self.relay: pykka.ActorRef[Any] | None = None
        self.monitor: pykka.ActorRef[Any] | None = None
        self.scheduler: Any = None  # an ActorRef, or a RemoteRef when it runs apart
        self.db: pykka.ActorRef[Any] | None = None
        self.addresses: dict[str, str] = {}
        self._next_id = 0
        self._seq = 0
        self._on_stop_requested = on_stop_requested
        self._hostname = socket.gethostname()

    def connect(
        self,
        relay: pykka.ActorRef[Any],
        monitor: pykka.ActorRef[Any],
        scheduler: Any,
        addresses: dict[str, str],
        db: pykka.ActorRef[Any] | None = None,
    ) -> None:
        """Wire the Hub to the other controller actors (before any engine registers)."""
        self.relay, self.monitor, self.scheduler, self.db = relay, monitor, scheduler, db
        self.addresses = addresses
        self.questions.reporters = tuple(a for a in (addresses["mux"], addresses.get("task")) if a)

    def on_receive(self, message: Any) -> Any:
        match message:
            case TasksSubmitted(tasks=tasks, balanced=balanced, unassigned=unassigned):
                for msg_id, engine, _client in tasks:
                    record = self.engines.get(engine)
                    if record is not None:
                        (record.balanced if balanced else record.queue).add(msg_id)
                        self.tasks[msg_id] = engine
                if balanced:
                    self.unassigned = unassigned
                self.questions.recheck()
            case TasksFinished(tasks=tasks, balanced=balanced, unassigned=unassigned):
                for msg_id, engine, status in tasks:
                    record = self.engines.get(engine)
                    self.tasks.pop(msg_id, None)
                    if status != "moved":  # moved: sent elsewhere
                        remember(self.done, msg_id, None, _DONE_LIMIT)
                    held = (
                        None if record is None else (record.balanced if balanced else record.queue)
                    )
                    if record is not None and held is not None and msg_id in held:
                        held.discard(msg_id)
                        record.completed += status != "moved"
                if balanced:
                    self.unassigned = unassigned
                self.questions.recheck()
            case Consider() | Recheck():
                self.questions.handle(message)
            case RegisterEngine():
                return self._register(message)
            case ConnectClient():
                return ClientConfig(
                    mux=self.addresses["mux"],
                    task=self.addresses.get("task", ""),
                    db=self.addresses.get("db", ""),
                    engines={e.id: e.uuid for e in self.engines.values()},
                    nodes={e.id: e.node for e in self.engines.values()},
                    executors={e.id: e.executor for e in self.engines.values() if e.executor},
                    started=self.started,
                    seq=self._seq,
                )
            case HeartFailed(uuid=uuid, silent_for=silent):
                self._unregister(uuid, f"no heartbeat for {silent:.1f} s")
            case QueueStatus():
                return self.questions.ask(message)
            case HubStatus():
                return {
                    "engines": {
                        e.id: {"uuid": e.uuid, "pid": e.pid, "hostname": e.hostname}
                        for e in self.engines.values()
                    },
                    "queue": self._queue_status(None),
                    "uptime": time.time() - self.started,
                    "pid": os.getpid(),
                }
            case StopController():
                if self._on_stop_requested is not None:
                    self._on_stop_requested()
                return True
            case Hello():
                return True
        return None

    def _register(self, request: RegisterEngine) -> EngineConfig:
        known = self.by_uuid.get(request.uuid)
        if known is not None:  # it thought us gone (a pause), and we never noticed
            return EngineConfig(id=known.id, heartbeat_period=self.engine_heartbeat)
        engine_id = request.id  # an engine back from before a restart keeps its id
        if engine_id < 0 or engine_id in self.engines:
            engine_id = self._next_id
        self._next_id = max(self._next_id, engine_id + 1)
        record = EngineRecord(
            engine_id,
            request.uuid,
            request.node,
            request.pid,
            request.hostname,
            time.time(),
            request.executor,
        )
        self.engines[engine_id] = record
        self.by_uuid[request.uuid] = record
        added = EngineAdded(
            id=engine_id, uuid=request.uuid, node=request.node, executor=request.executor
        )
        for ref in (self.relay, self.monitor, self.scheduler, self.db):
            if ref is not None:
                ref.tell(added)
        if request.hostname == self._hostname:
            self._watch_pid(record)
        self._seq += 1
        self.publisher.publish(
            EngineRegistered(
                id=engine_id,
                uuid=request.uuid,
                node=request.node,
                executor=request.executor,
                seq=self._seq,
                epoch=self.started,
            )
        )
        logger.info("engine %d registered (pid %d on %s)", engine_id, request.pid, request.hostname)
        return EngineConfig(id=engine_id, heartbeat_period=self.engine_heartbeat)

    def _watch_pid(self, record: EngineRecord) -> None:
        """Notice at once when an engine process of this host exits."""
        try:
            record.pidfd = os.pidfd_open(record.pid)
        except (OSError, AttributeError) as e:
            logger.debug("cannot watch pid %d of engine %d: %s", record.pid, record.id, e)
            return
        if record.pid == os.getpid():
            os.close(record.pidfd)
            record.pidfd = None  # an in-process engine: its heart tells
            return
        self.inbox.add_fd(
            record.pidfd, lambda: self._unregister(record.uuid, f"process {record.pid} exited")
        )

    def _unregister(self, uuid: str, reason: str) -> None:
        record = self.by_uuid.pop(uuid, None)
        if record is None:
            return
        del self.engines[record.id]
        if record.pidfd is not None:
            self.inbox.remove_fd(record.pidfd)
            os.close(record.pidfd)
        died = EngineDied(id=record.id, uuid=uuid, reason=reason)
        for ref in (self.relay, self.monitor, self.scheduler):
            if ref is not None:
                ref.tell(died)
        for msg_id in record.queue | record.balanced:
            self.tasks.pop(msg_id, None)
        self._seq += 1
        self.publisher.publish(
            EngineUnregistered(
                id=record.id, uuid=uuid, reason=reason, seq=self._seq, epoch=self.started
            )
        )
        logger.warning("engine %d unregistered: %s", record.id, reason)

    # -- queue status: answered once the Hub holds what its asker has seen ----------------------
    def _wanted(self, engines: tuple[int, ...] | None) -> list[EngineRecord]:
        if engines is None:
            return list(self.engines.values())
        return [self.engines[i] for i in engines if i in self.engines]

    def _fence(self, waiting: Waiting) -> dict[str, list[str]]:
        """The engines with tasks outstanding here: their clients may hold some results."""
        assert isinstance(waiting.ask, QueueStatus)
        return {
            e.node: [*e.queue, *e.balanced]
            for e in self._wanted(waiting.ask.engines)
            if e.queue or e.balanced
        }

    def _ready(self, waiting: Waiting) -> bool:
        """Whether the Hub heard of every result its asker holds unconfirmed (or their
        engines said they answered them)."""
        return all(m in self.done or m in waiting.answered for m in waiting.ask.finished)

    def _answer(self, waiting: Waiting) -> dict[Any, Any]:
        assert isinstance(waiting.ask, QueueStatus)
        return self._queue_status(waiting.ask.engines, waiting.ask.verbose, waiting.answered)

    def _queue_status(
        self,
        engines: tuple[int, ...] | None,
        verbose: bool = False,
        answered: set[str] | frozenset[str] = frozenset(),
    ) -> dict[Any, Any]:
        """Per-engine counts (msg_ids, if `verbose`); `answered`: tasks their engines
        answered whose copies are still on their way here (finished, then)."""
        status: dict[Any, Any] = {}
        for e in self._wanted(engines):
            queue, balanced = e.queue - answered, e.balanced - answered
            completed = e.completed + len(e.queue) + len(e.balanced) - len(queue) - len(balanced)
            status[e.id] = (
                {"queue": sorted(queue), "completed": completed, "tasks": sorted(balanced)}
                if verbose
                else {"queue": len(queue), "completed": completed, "tasks": len(balanced)}
            )
        status["unassigned"] = self.unassigned
        return status

    def _after_stop(self) -> None:
        for record in list(self.engines.values()):
            if record.pidfd is not None:
                self.inbox.remove_fd(record.pidfd)
                os.close(record.pidfd)
        self.publisher.close()
        super()._after_stop()
