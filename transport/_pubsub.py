"""Signed publish/subscribe: the Hub's notifications to clients."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import zmq
from actorcluster.transport._inbox import SocketInbox
from actorcluster.transport._message import Message
from actorcluster.transport._session import Item, Session, WireError
from actorcluster.transport._zmqio import send_frames

__all__ = ["Publisher", "Subscriber"]

logger = logging.getLogger(__name__)


class Publisher:
    """A bound PUB socket sending signed messages."""

    def __init__(
        self,
        session: Session,
        host: str,
        context: zmq.Context[Any] | None = None,
        port: int = 0,
    ) -> None:
        self._session = session
        self._pub = (context or zmq.Context.instance()).socket(zmq.PUB)
        self._pub.linger = 0
        if port:
            self._pub.bind(f"tcp://{host}:{port}")
        else:
            port = self._pub.bind_to_random_port(f"tcp://{host}")
        self.endpoint = f"tcp://{host}:{port}"

    def publish(self, message: Message) -> None:
        send_frames(self._pub, self._session.pack([Item("", None, message)]))

    def close(self) -> None:
        self._pub.close(linger=0)


class Subscriber:
    """A SUB socket read by an actor's inbox; verified messages go to `on_message`."""

    def __init__(
        self,
        session: Session,
        inbox: SocketInbox,
        endpoint: str,
        on_message: Callable[[Message], None],
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self._session = session
        self._inbox = inbox
        self._on_message = on_message
        self._sub = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._sub.linger = 0
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self._sub.connect(endpoint)
        inbox.add_socket(self._sub, self._handle)

    def close(self) -> None:
        self._inbox.remove_socket(self._sub)
        self._sub.close(linger=0)

    def _handle(self, frames: list[Any]) -> None:
        try:
            incoming = self._session.unpack(frames)
        except WireError as e:
            self._session.drop(e, "notifications")
            return
        for item in incoming.items:
            self._on_message(item.message)
