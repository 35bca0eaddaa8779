"""The client's I/O actor: sends requests, receives results and notifications.

It runs in a thread of its own, so results arrive (and futures complete) without the user
calling `spin()`; requests queued by the user's thread leave in batches when it goes idle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actorcluster.actors.messages import (
    AbortTasks,
    ClientConfig,
    ConnectClient,
    EngineRegistered,
    EngineUnregistered,
    Request,
    SubmitTask,
    TaskResult,
)
from actorcluster.transport import Address, Message, ReplyFuture, Session, SocketActor, Subscriber

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


class ClientIO(SocketActor):
    """A client's connection to its cluster.

    Accepts: `Connect`, `Send`, `Ask` (local), `TaskResult` (from relays, the DB writer),
    notifications.
    Emits: `ConnectClient` to the Hub, requests to the relay. Owns: DEALERs to the
    controller's actors and a SUB for the Hub's notifications.

    Args:
        session: the cluster's session.
        engines: the client's engine table (id -> uuid), kept current here.
        on_result: called with each `TaskResult`, in this actor's thread.
    """

    def __init__(
        self,
        session: Session,
        engines: dict[int, str],
        on_result: Callable[[TaskResult], None],
    ) -> None:
        super().__init__(session, name="client", origin=f"client-{session.session}")
        self.engines = engines
        self._on_result = on_result
        self._subscriber: Subscriber | None = None
        self._snapshot_seq: int | None = None
        self._early: list[Notification] = []

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskResult():
                self._on_result(message)
            case Send(address=address, requests=requests):
                node, name = Address.parse(address)
                for request in requests:
                    if self.port.post(node, name, request) >= self.port.batch_limit:
                        self.port.flush(node)
            case Connect():
                return self._connect(message)
            case Ask(address=address, message=asked, timeout=timeout):
                node, name = Address.parse(address)
                return self.port.ask(node, name, asked, timeout)
        return None

    def _connect(self, connect: Connect) -> ReplyFuture:
        # Subscribe before the snapshot: no registration can fall between the two.
        self._subscriber = Subscriber(
            self.session, self.inbox, connect.notification, self._notified
        )
        node, name = Address.parse(connect.hub)
        request = ConnectClient(session=self.session.session, node=str(self.node))
        future = self.port.ask(node, name, request, connect.timeout)
        future.add_done_callback(self._snapshot)
        return future

    def _snapshot(self, reply: ReplyFuture) -> None:
        try:
            config: ClientConfig = reply.get(timeout=0)
        except Exception:  # noqa: BLE001 - the caller of Connect reports it
            return
        self.engines.clear()
        self.engines.update(config.engines)
        self._snapshot_seq = config.seq
        early, self._early = self._early, []
        for notification in early:
            self._notified(notification)

    def _notified(self, message: Message) -> None:
        if not isinstance(message, EngineRegistered | EngineUnregistered):
            return
        if self._snapshot_seq is None:
            self._early.append(message)
        elif message.seq > self._snapshot_seq:
            if isinstance(message, EngineRegistered):
                self.engines[message.id] = message.uuid
            else:
                self.engines.pop(message.id, None)

    def _after_stop(self) -> None:
        if self._subscriber is not None:
            self._subscriber.close()
        super()._after_stop()
