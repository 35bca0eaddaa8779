"""The client's I/O actor: sends requests, receives results and notifications.

It runs in a thread of its own, so results arrive (and futures complete) without the user
calling `spin()`; requests queued by the user's thread leave in batches when it goes idle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from actorcluster.actors.messages import (
    AbortTasks,
    ClientConfig,
    ConnectClient,
    EngineRegistered,
    EngineUnregistered,
    Redeliver,
    Request,
    SubmitTask,
    TaskResult,
    TasksRecorded,
    relay_copy,
)
from actorcluster.error import NodeUnreachable
from actorcluster.transport import (
    Address,
    Item,
    Message,
    ReplyFuture,
    Session,
    SocketActor,
    Subscriber,
    Terminated,
    listen_toward,
)

__all__ = ["Ask", "ClientIO", "Connect", "Send"]

logger = logging.getLogger(__name__)

Notification = EngineRegistered | EngineUnregistered


@dataclass(frozen=True)
class Connect:
    """Subscribe to `notification`, then ask the Hub at `hub` for the cluster's addresses.

    Answered with a `ReplyFuture` of the `ClientConfig`.
    """

    hub: str
    notification: str
    timeout: float


@dataclass(frozen=True)
class Ask:
    """Ask `message` of the actor at `address` from this client's node (so that actor may
    later send this client results); answered with the `ReplyFuture` of the reply."""

    address: str
    message: Message
    timeout: float


@dataclass(frozen=True)
class Send:
    """Send `requests` to `address` (the relay or the scheduler)."""

    address: str
    requests: list[Request | SubmitTask | AbortTasks | Redeliver]


Outgoing = Request | SubmitTask | AbortTasks | Redeliver
_RESYNC_EVERY = 1.0  # seconds between asks for the engine table of a restarted Hub
_SWEEP_EVERY = 0.25  # seconds between looks for answers that came after their waiter left


@dataclass(frozen=True)
class _Sweep:
    """Timer: read the sockets of the client's threads that nobody reads now."""


@dataclass(frozen=True)
class _Resync:
    """Timer: ask the restarted Hub for its engine table again."""


class ClientIO(SocketActor):
    """A client's connection to its cluster.

    Accepts: `Connect`, `Send`, `Ask` (local), `TaskResult` (from relays, the DB writer,
    engines), `TasksRecorded` (the DB writer), notifications.
    Emits: `ConnectClient` to the Hub, requests to engines and copies to the relay.
    Owns: a listening ROUTER (engines answer here), DEALERs to the controller's actors and
    engines, and a SUB for the Hub's notifications.

    A request for an engine it can reach goes straight there (`direct`), and a copy to the
    relay, which records it (without a payload of `bulk_threshold` bytes or more) and
    fails it if the engine dies; otherwise the request goes through the relay.

    Args:
        session: the cluster's session.
        hub: the Hub's address (the client listens where the cluster can reach it).
        engines: the client's engine table (id -> uuid), kept current here.
        on_result: called with each `TaskResult`, in this actor's thread.
        bulk_threshold: payload bytes from which the relay's copy has no payload (0: never).
        sweep: called every `_SWEEP_EVERY` seconds, in this actor's thread: reads answers
            that came to the sockets of threads no longer waiting for them.
        on_recorded: called with what the task database confirmed it holds.
        on_restart: called when the controller restarted (its Hub answers again).
    """

    def __init__(
        self,
        session: Session,
        hub: str,
        engines: dict[int, str],
        on_result: Callable[[TaskResult], None],
        bulk_threshold: int = 0,
        sweep: Callable[[], None] | None = None,
        on_recorded: Callable[[TasksRecorded], None] | None = None,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        listen, advertise = listen_toward(Address.parse(hub).node)
        super().__init__(session, name="client", listen=listen, advertise=advertise)
        self.engines = engines
        self.nodes: dict[int, str] = {}
        # where each engine's executor listens: replaced, never changed, so that other
        # threads (blocking calls) read it as it is
        self.executors: Mapping[int, str] = MappingProxyType({})
        self._on_result = on_result
        self._on_recorded = on_recorded
        self._on_restart = on_restart
        self._bulk_threshold = bulk_threshold
        self._sweep = sweep
        self._mux = ""  # the relay (where requests go when an engine cannot be reached)
        self._unreachable: set[str] = set()  # engine nodes this client cannot connect to
        self._subscriber: Subscriber | None = None
        self._snapshot_seq: int | None = None
        self._epoch: float | None = None
        self._hub = hub
        self._early: list[Notification] = []
        self._watching_hub = False

    def on_start(self) -> None:
        if self._sweep is not None:
            self.call_later(_SWEEP_EVERY, _Sweep())

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskResult():
                self._on_result(message)
            case TasksRecorded():
                if self._on_recorded is not None:
                    self._on_recorded(message)
            case _Sweep():
                assert self._sweep is not None
                self._sweep()
                self.call_later(_SWEEP_EVERY, _Sweep())
            case Send(address=address, requests=requests):
                for request in requests:
                    self._send(address, request)
            case Connect():
                return self._connect(message)
            case _Resync():
                self._resync()
            case Terminated(address=address) if address == self._hub:
                # the controller went away: ask until it answers again (restarted?)
                self._watching_hub = False
                self.call_later(_RESYNC_EVERY, _Resync())
            case Ask(address=address, message=asked, timeout=timeout):
                node, name = Address.parse(address)
                return self.port.ask(node, name, asked, timeout)
        return None

    def connected(self, engine: int) -> str | None:
        """The node of `engine` if this actor is connected to it, else None. Any thread:
        a caller that sends there itself uses it as a hint (the relay's copy of a request
        fails it if the engine is gone)."""
        node = self.nodes.get(engine)
        if node is None or node in self._unreachable or not self.port.connected(node):
            return None
        return node

    def _send(self, address: str, request: Outgoing) -> None:
        if isinstance(request, Request):
            self._mux = address
            node = self.nodes.get(request.engine, "")
            if Address.dialable(node) and node not in self._unreachable:
                direct = replace(request, direct=True)
                if self.port.post(node, "engine", direct) >= self.port.batch_limit:
                    self.port.flush(node)
                self._post(address, self.copy(direct))
                return
        self._post(address, request)

    def copy(self, request: Request) -> Request:
        """The relay's copy of a direct request: without a large payload. Any thread."""
        return relay_copy(request, self._bulk_threshold)

    def _post(self, address: str, request: Outgoing) -> None:
        node, name = Address.parse(address)
        if self.port.post(node, name, request) >= self.port.batch_limit:
            self.port.flush(node)

    def on_undelivered(self, node: str, items: list[Item]) -> None:
        """A request an engine could not be reached for goes through the relay (which
        can reach it, or fails it); others that could not leave fail at once."""
        for item in items:
            message = item.message
            request = message.request if isinstance(message, SubmitTask) else message
            if isinstance(request, Request) and item.to == "engine" and self._mux:
                if node not in self._unreachable:
                    self._unreachable.add(node)
                    logger.warning(
                        "no connection to the engine at %s from here: its requests go "
                        "through the controller",
                        node,
                    )
                self._post(self._mux, replace(request, direct=False))
            elif isinstance(request, Request) and request.direct and item.to != "engine":
                pass  # the relay's copy: the client gives it to a restarted controller
            elif isinstance(request, Request):
                error = NodeUnreachable(
                    f"task {request.msg_id} was not sent: the controller at {node} is "
                    "unreachable (stopped, or restarting?)"
                )
                self._on_result(
                    TaskResult(
                        msg_id=request.msg_id,
                        engine=request.engine,
                        status="unsent",  # nothing to give a restarted controller
                        error=error,
                    )
                )

    def _connect(self, connect: Connect) -> ReplyFuture:
        # Subscribe before the snapshot: no registration can fall between the two.
        self._subscriber = Subscriber(
            self.session, self.inbox, connect.notification, self._notified
        )
        future = self._ask_snapshot(connect.timeout)
        future.add_done_callback(self._snapshot)
        return future

    def _ask_snapshot(self, timeout: float) -> ReplyFuture:
        node, name = Address.parse(self._hub)
        request = ConnectClient(session=self.session.session, node=str(self.node))
        return self.port.ask(node, name, request, timeout)

    def _resync(self) -> None:
        """The Hub restarted: take its engine table again (until it answers)."""

        def taken(reply: ReplyFuture) -> None:
            try:
                reply.get(timeout=0)
            except Exception:  # noqa: BLE001 - not back yet: ask again later
                self.call_later(_RESYNC_EVERY, _Resync())
                return
            self._snapshot(reply)

        self._ask_snapshot(_RESYNC_EVERY * 10).add_done_callback(taken)

    def _snapshot(self, reply: ReplyFuture) -> None:
        try:
            config: ClientConfig = reply.get(timeout=0)
        except Exception:  # noqa: BLE001 - the caller of Connect reports it
            return
        self.engines.clear()
        self.engines.update(config.engines)
        self.nodes = dict(config.nodes)
        self.executors = MappingProxyType(dict(config.executors))
        self._snapshot_seq = config.seq
        restarted = self._epoch is not None and config.started != self._epoch
        self._epoch = config.started
        if not self._watching_hub:  # a restart may come with no notification seen
            self._watching_hub = True
            self.watch(self._hub)
        if restarted and self._on_restart is not None:
            self._on_restart()
        early, self._early = self._early, []
        for notification in early:
            self._notified(notification)

    def _notified(self, message: Message) -> None:
        if not isinstance(message, EngineRegistered | EngineUnregistered):
            return
        if self._snapshot_seq is None:
            self._early.append(message)
        elif message.epoch != self._epoch:  # from a restarted Hub
            self._early.append(message)
            self._snapshot_seq = None
            self._resync()
        elif message.seq > self._snapshot_seq:
            executors = dict(self.executors)
            if isinstance(message, EngineRegistered):
                self.engines[message.id] = message.uuid
                self.nodes[message.id] = message.node
                if message.executor:
                    executors[message.id] = message.executor
            else:
                self.engines.pop(message.id, None)
                self.nodes.pop(message.id, None)
                executors.pop(message.id, None)
            self.executors = MappingProxyType(executors)

    def _after_stop(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
        super()._after_stop()
