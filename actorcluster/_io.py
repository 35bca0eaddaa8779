"""The client's I/O actor: sends requests, receives results and notifications.

It runs in a thread of its own, so results arrive (and futures complete) without the user
calling `spin()`; requests queued by the user's thread leave in batches when it goes idle.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from actorcluster.actors.messages import (
    AbortTasks,
    Apply,
    Bulk,
    ClientConfig,
    ConnectClient,
    EngineRegistered,
    EngineUnregistered,
    Push,
    Request,
    SubmitTask,
    TaskResult,
    transfer_timeout,
)
from actorcluster.error import NodeUnreachable
from actorcluster.transport import (
    Address,
    Item,
    Message,
    Payload,
    ReplyFuture,
    Session,
    SocketActor,
    Subscriber,
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
    requests: list[Request | SubmitTask | AbortTasks]


Outgoing = Request | SubmitTask | AbortTasks
_RESYNC_EVERY = 1.0  # seconds between asks for the engine table of a restarted Hub


@dataclass(frozen=True)
class _Resync:
    """Timer: ask the restarted Hub for its engine table again."""


@dataclass
class _Held:
    """A request waiting for the bulk transfers before it (or its own) to finish."""

    address: str
    request: Outgoing
    stub: Outgoing | None = None  # what goes to the relay once `transfer` succeeded
    transfer: ReplyFuture | None = None


class ClientIO(SocketActor):
    """A client's connection to its cluster.

    Accepts: `Connect`, `Send`, `Ask` (local), `TaskResult` (from relays, the DB writer,
    engines), notifications.
    Emits: `ConnectClient` to the Hub, requests to the relay, `Bulk` to engines. Owns: a
    listening ROUTER (engines send large results straight here), DEALERs to the
    controller's actors and engines, and a SUB for the Hub's notifications.

    A request whose payload reaches `bulk_threshold` bytes sends the payload straight to
    its engine (`Bulk`), then the request without it through the relay; requests sent
    after it wait until the engine has the data, so each engine sees them in order.

    Args:
        session: the cluster's session.
        hub: the Hub's address (the client listens where the cluster can reach it).
        engines: the client's engine table (id -> uuid), kept current here.
        on_result: called with each `TaskResult`, in this actor's thread.
        bulk_threshold: payload bytes from which data goes straight to engines (0: never).
    """

    def __init__(
        self,
        session: Session,
        hub: str,
        engines: dict[int, str],
        on_result: Callable[[TaskResult], None],
        bulk_threshold: int = 0,
    ) -> None:
        listen, advertise = listen_toward(Address.parse(hub).node)
        super().__init__(session, name="client", listen=listen, advertise=advertise)
        self.engines = engines
        self.nodes: dict[int, str] = {}
        self._on_result = on_result
        self._bulk_threshold = bulk_threshold
        self._held: deque[_Held] = deque()
        self._subscriber: Subscriber | None = None
        self._snapshot_seq: int | None = None
        self._epoch: float | None = None
        self._hub = hub
        self._early: list[Notification] = []

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskResult():
                self._on_result(message)
            case Send(address=address, requests=requests):
                for request in requests:
                    self._send(address, request)
            case Connect():
                return self._connect(message)
            case _Resync():
                self._resync()
            case Ask(address=address, message=asked, timeout=timeout):
                node, name = Address.parse(address)
                return self.port.ask(node, name, asked, timeout)
        return None

    def _send(self, address: str, request: Outgoing) -> None:
        held = self._bulk(address, request)
        if held is None and not self._held:
            self._post(address, request)
            return
        self._held.append(held or _Held(address, request))
        if held is not None and held.transfer is not None:
            held.transfer.add_done_callback(lambda _: self._release())

    def _bulk(self, address: str, request: Outgoing) -> _Held | None:
        """Start sending the payload of a large request straight to its engine."""
        if self._bulk_threshold <= 0 or not isinstance(request, Apply | Push):
            return None
        size = request.payload.nbytes
        node = self.nodes.get(request.engine, "")
        if size < self._bulk_threshold or not Address.dialable(node):
            return None
        bulk = Bulk(msg_id=request.msg_id, payload=request.payload)
        transfer = self.port.ask(node, "engine", bulk, timeout=transfer_timeout(size))
        stub = replace(request, payload=Payload(b""), bulk=size)
        return _Held(address, request, stub, transfer)

    def _release(self) -> None:
        """Send the held requests, in order, up to the first transfer still under way."""
        while self._held and (self._held[0].transfer is None or self._held[0].transfer.done()):
            held = self._held.popleft()
            request = held.request
            if held.transfer is not None:
                try:
                    held.transfer.get(timeout=0)
                    assert held.stub is not None
                    request = held.stub
                except Exception as e:  # noqa: BLE001 - the data goes the long way round
                    logger.warning(
                        "the data of %s could not go straight to its engine (%s); sending it "
                        "through the controller",
                        held.request.msg_id if isinstance(held.request, Apply | Push) else "?",
                        e,
                    )
            self._post(held.address, request)

    def _post(self, address: str, request: Outgoing) -> None:
        node, name = Address.parse(address)
        if self.port.post(node, name, request) >= self.port.batch_limit:
            self.port.flush(node)

    def on_undelivered(self, node: str, items: list[Item]) -> None:
        """Requests that could not leave fail at once, rather than wait for ever."""
        for item in items:
            message = item.message
            request = message.request if isinstance(message, SubmitTask) else message
            if isinstance(request, Request):
                error = NodeUnreachable(
                    f"task {request.msg_id} was not sent: the controller at {node} is "
                    "unreachable (stopped, or restarting?)"
                )
                self._on_result(
                    TaskResult(
                        msg_id=request.msg_id, engine=request.engine, status="error", error=error
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
        self._snapshot_seq = config.seq
        self._epoch = config.started
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
            if isinstance(message, EngineRegistered):
                self.engines[message.id] = message.uuid
                self.nodes[message.id] = message.node
            else:
                self.engines.pop(message.id, None)
                self.nodes.pop(message.id, None)

    def _after_stop(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
        super()._after_stop()
