"""Listener: a listening socket that a plain thread reads between pieces of other work.

An engine's executor runs user code in its thread and reads requests only between two of
them, so it cannot be an actor whose inbox reads its sockets. It waits here instead: for
a message or a wake-up from another thread, reads what came (checked like any message:
dropped and counted if bad), and answers peers by their connection identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq
from actorcluster.transport._address import listen_toward, node_of
from actorcluster.transport._inbox import Waker
from actorcluster.transport._session import Incoming, Item, Session, WireError
from actorcluster.transport._zmqio import readable, recv_frames, send_frames

__all__ = ["Listener"]


class Listener:
    """A ROUTER bound where `toward` can reach it, read by one thread at a time.

    Args:
        session: signs and checks its messages (give it one of its own: its replay
            history is then read by this listener's thread only).
        toward: a `host:port` that must be able to dial this listener.
        name: how the drop log names it.
    """

    def __init__(self, session: Session, toward: str, name: str = "listener") -> None:
        self.session = session
        self.name = name
        self._waker = Waker()
        self._router: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a peer that connects again under its identity replaces its old connection
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        listen, advertise = listen_toward(toward)
        self._router.bind(listen)
        self.node = node_of(str(self._router.get_string(zmq.LAST_ENDPOINT)), advertise)
        self._poller = zmq.Poller()
        self._poller.register(self._router, zmq.POLLIN)
        self._poller.register(self._waker.fd, zmq.POLLIN)

    def wake(self) -> None:
        """End a `wait` now. Any thread."""
        self._waker.wake()

    def wait(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds (None: no limit) for a message or a `wake`;
        return whether a message waits."""
        ms = -1 if timeout is None else int(timeout * 1000)
        ready = dict(self._poller.poll(ms))
        if self._waker.fd in ready:
            self._waker.clear()
        return self._router in ready

    def readable(self) -> bool:
        """Whether a message waits."""
        return readable(self._router)

    def receive(self) -> Incoming | None:
        """Read the message that waits; None if it was refused (dropped and counted), or
        if none waited."""
        try:
            frames = recv_frames(self._router)
        except zmq.Again:  # nothing waited after all
            return None
        try:
            return self.session.unpack(frames)
        except WireError as e:
            self.session.drop(e, f"{self.name} {self.node}")
            return None

    def send(self, idents: Sequence[bytes], items: list[Item]) -> bool:
        """Send `items` to the peer with connection identity `idents`; False if it is not
        connected (gone, or never came)."""
        try:
            send_frames(self._router, [*idents, *self.session.pack(items)])
        except zmq.ZMQError as e:
            if e.errno != zmq.EHOSTUNREACH:
                raise
            return False
        return True

    def close(self) -> None:
        """Close the socket and the wake-up fd."""
        self._router.close(linger=0)
        self._waker.close()
