"""The direct (mux) relay: requests from clients to the engine they name, results back.

It routes on the request's engine id and the result's msg_id only, never deserializes a
payload, and tells the Hub what passed in one message per burst instead of one per task.
A client that can reach the engine sends a request straight to it (`direct`) and the relay
a copy, which the relay records and watches but does not forward; the engine answers the
client and copies the relay.

Order: the copy of a request (from the client, or from the engine for a blocking call)
and its result's copy (from the engine) come on different connections, in either order.
A result that comes first waits in `early` for its request (which says whether it is a
task to record or control); a second copy of a request is dropped (`pending`, `finished`).
Safe because nothing waits on the relay's record: the client has its result, the database
answers questions once it holds what their askers have seen (`actors.questions`), and an
engine gives a restarted controller the results it did not confirm. An outcome the relay
makes itself (`EngineError`) is told to the database before it leaves for its client.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka
from actorcluster.actors.bounded import remember
from actorcluster.actors.messages import (
    Abort,
    Apply,
    Clear,
    EngineAdded,
    EngineDied,
    Execute,
    Hello,
    Pull,
    Push,
    ReportNow,
    Request,
    ShutdownEngine,
    Task,
    TaskResult,
    not_run,
)
from actorcluster.actors.report import HubReport, Nudge, Teller
from actorcluster.transport import Item, Session, SocketActor

from actorcluster.error import EngineError

__all__ = ["MuxRelay"]

logger = logging.getLogger(__name__)

_EARLY_LIMIT = 10_000  # results kept waiting for the copy of their request


class MuxRelay(SocketActor):
    """Relays requests to engines by id and results to the clients that sent them.

    Accepts: `Hello` (an engine or client connects), requests (`Apply`, `Execute`, `Push`,
    `Pull`, `Abort`, `Clear`, `ShutdownEngine`) from clients, `TaskResult` from engines,
    `EngineAdded`/`EngineDied` from the Hub. Emits: requests to engines, `TaskResult` to
    clients, `TasksSubmitted`/`TasksFinished` to the Hub, `TaskLog` to the DB writer. Owns: a listening ROUTER.
    """

    verify_buffers = False  # payloads pass through unread; their users check them

    def __init__(
        self,
        session: Session,
        host: str,
        hub: pykka.ActorRef[Any],
        scheduler: Teller | None = None,
        db: Teller | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(session, name="relay", listen=f"tcp://{host}:{port}")
        self.hub = hub
        self.engines: dict[int, str] = {}
        self.pending: dict[str, tuple[str, int, bool]] = {}  # -> client, engine, is a task
        self.shutdowns: set[str] = set()  # pending requests to stop an engine
        self.early: dict[str, TaskResult] = {}  # results whose request copy is late
        self.finished: dict[str, None] = {}  # the last direct tasks done (their copies came)
        # results for clients that could not be dialled: sent on their route once it is known
        self.unrouted: dict[str, list[TaskResult]] = {}
        self.report = HubReport(hub, balanced=False, also=scheduler, db=db, origin=self.received_as)

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskResult():
                self._result(message)
            case Apply() | Execute() | Push() | Pull() | Abort() | Clear() | ShutdownEngine():
                self._request(message)
            case Hello():
                return True
            case Nudge():
                self.report.nudge_pending = False
            case ReportNow():
                self.report.flush(0, now=True)
            case EngineAdded(id=engine, node=node):
                self.engines[engine] = node
            case EngineDied(id=engine, reason=reason):
                self._engine_died(engine, reason)
        return None

    def _request(self, request: Request) -> None:
        msg_id = request.msg_id
        if request.direct and (msg_id in self.pending or msg_id in self.finished):
            return  # the second copy of a request asked of an executor (client's, engine's)
        report = self.report
        task = isinstance(request, Task)  # control (abort, clear, shutdown) is not recorded
        if task:
            report.record_request(request)
        node = self.engines.get(request.engine)
        if node is None:
            error = EngineError(
                f"engine {request.engine} is not registered (registered: {sorted(self.engines)})"
            )
            failed = not_run(request.msg_id, request.engine, "error", error, client=request.client)
            if task:
                report.finished.append((request.msg_id, request.engine, "error"))
            self._to_client(request.client, failed, record=task)
            return
        self.pending[request.msg_id] = (request.client, request.engine, task)
        if isinstance(request, ShutdownEngine):
            self.shutdowns.add(request.msg_id)
        if not request.direct:
            self.send_to(node, "engine", request)
        if task:
            report.submitted.append((request.msg_id, request.engine, request.client))
        for result in self.unrouted.pop(request.client, ()):  # its route is known now
            self._to_client(request.client, result)
        early = self.early.pop(request.msg_id, None)
        if early is not None:  # its result came first
            self._result(early)

    def _result(self, result: TaskResult) -> None:
        pending = self.pending.pop(result.msg_id, None)
        if pending is None:
            if result.client and not result.direct:  # from before a restart of the controller
                self._to_client(result.client, result)
            elif result.msg_id not in self.finished:  # its request's copy is on its way
                self._early_result(result)
            return
        client, _engine, task = pending
        self.shutdowns.discard(result.msg_id)
        if result.direct:  # the client has it already
            if task:
                self.report.record_result(result)
            remember(self.finished, result.msg_id, None, _EARLY_LIMIT)
        else:
            self._to_client(client, result, record=task)
        if task:
            self.report.finished.append((result.msg_id, result.engine, result.status))

    def _early_result(self, result: TaskResult) -> None:
        """Keep a result until its request's copy comes (it says whether it is a task to
        record). One whose copy never comes (lost with a restart) its engine gives to the
        task database itself (`Redeliver`)."""
        if len(self.early) >= _EARLY_LIMIT:
            for msg_id in list(self.early)[: _EARLY_LIMIT // 2]:
                del self.early[msg_id]
        self.early[result.msg_id] = result

    def _engine_died(self, engine: int, reason: str) -> None:
        self.engines.pop(engine, None)
        for msg_id, (client, target, task) in list(self.pending.items()):
            if target == engine:
                del self.pending[msg_id]
                if msg_id in self.shutdowns:  # what it asked for
                    self.shutdowns.discard(msg_id)
                    self._to_client(
                        client, not_run(msg_id, engine, "ok", client=client), record=False
                    )
                    continue
                error = EngineError(f"engine {engine} died while running task {msg_id} ({reason})")
                failed = not_run(msg_id, engine, "error", error, client=client)
                self._to_client(client, failed, record=task)
                if task:
                    self.report.finished.append((msg_id, engine, "error"))

    def _to_client(self, client: str, result: TaskResult, *, record: bool = True) -> None:
        """Send `result` to its client, once the task database was told of it: a question
        the client asks after it has the result finds it there."""
        if client:  # the controller's own requests (shutdown) have no client
            if record:
                self.report.record_result(result)
                self.report.flush(0, now=True)
            self.send_to(client, "client", result)

    def on_undelivered(self, node: str, items: list[Item]) -> None:
        """A result for a client that cannot be dialled (behind a NAT, say) and has not
        spoken to this relay yet: it goes on the client's own connection once it has one
        (its request's copy is on its way)."""
        kept = self.unrouted.setdefault(node, [])
        for item in items:
            message = item.message
            if item.to == "client" and isinstance(message, TaskResult) and len(kept) < _EARLY_LIMIT:
                kept.append(message)
        if not kept:
            del self.unrouted[node]

    def flush(self) -> None:
        if self.report.flush(0):
            self.call_later(self.report.interval, Nudge())
        super().flush()

    def on_stop(self) -> None:
        self.report.flush(0, now=True)  # the task database hears of everything
