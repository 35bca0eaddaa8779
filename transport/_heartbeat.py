"""Heartbeats: a monitor publishes pings; each engine's heart echoes them from C.

The heart is a `zmq.proxy` between a SUB (pings in) and a DEALER (pongs out) running in
a thread of its own with the GIL released, so an engine answers while user code holds
the interpreter. A ping carries a sequence number; the monitor's ROUTER sees each pong
with the heart's identity (the engine's uuid).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import zmq
from actorcluster.transport._inbox import SocketInbox

__all__ = ["Heart", "Pulse"]

logger = logging.getLogger(__name__)


class Heart:
    """The engine side: echo pings from `ping` (a PUB) to `pong` (a ROUTER) as `identity`."""

    def __init__(
        self, ping: str, pong: str, identity: str, context: zmq.Context[Any] | None = None
    ) -> None:
        self._context = context or zmq.Context.instance()
        self._ping, self._pong, self._identity = ping, pong, identity.encode()
        self._control = f"inproc://heart-{uuid.uuid4().hex}"
        self._thread = threading.Thread(target=self._run, name="actorcluster-heart", daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        """Start beating (returns once the sockets are connected)."""
        self._thread.start()
        self._ready.wait(10)

    def stop(self) -> None:
        """Stop beating."""
        if not self._thread.is_alive():
            return
        control = self._context.socket(zmq.PAIR)
        control.linger = 0
        control.connect(self._control)
        control.send(b"TERMINATE")
        self._thread.join(5)
        control.close()

    def _run(self) -> None:
        sub = self._context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self._ping)
        out = self._context.socket(zmq.DEALER)
        out.setsockopt(zmq.ROUTING_ID, self._identity)
        out.connect(self._pong)
        control = self._context.socket(zmq.PAIR)
        control.bind(self._control)
        self._ready.set()
        try:
            zmq.proxy_steerable(sub, out, None, control)
        except zmq.ZMQError as e:
            logger.debug("heart stopped: %s", e)
        finally:
            for socket in (sub, out, control):
                socket.close(linger=0)


class Pulse:
    """The monitor side: a PUB for pings and a ROUTER for pongs, read by an actor's inbox.

    Args:
        inbox: the inbox of the actor that owns the sockets.
        host: the interface to bind.
        ports: the ping and pong ports (0: chosen by the system).
        on_pong: called with (heart identity, sequence number) for each pong.
    """

    def __init__(
        self,
        inbox: SocketInbox,
        host: str,
        on_pong: Callable[[str, int], None],
        context: zmq.Context[Any] | None = None,
        ports: tuple[int, int] = (0, 0),
    ) -> None:
        context = context or zmq.Context.instance()
        self._pub = context.socket(zmq.PUB)
        self._pub.linger = 0
        self._router = context.socket(zmq.ROUTER)
        self._router.linger = 0
        self.ping_endpoint = _bind(self._pub, host, ports[0])
        self.pong_endpoint = _bind(self._router, host, ports[1])
        self._on_pong = on_pong
        inbox.add_socket(self._router, self._handle)
        self._inbox = inbox

    def beat(self, seq: int) -> None:
        """Publish ping number `seq`."""
        self._pub.send(str(seq).encode())

    def close(self) -> None:
        self._inbox.remove_socket(self._router)
        self._router.close(linger=0)
        self._pub.close(linger=0)

    def _handle(self, frames: list[Any]) -> None:
        if len(frames) != 2:
            return
        try:
            seq = int(bytes(frames[1]))
        except ValueError:
            return
        self._on_pong(bytes(frames[0]).decode(errors="replace"), seq)


def _bind(socket: zmq.Socket[Any], host: str, port: int = 0) -> str:
    if port:
        socket.bind(f"tcp://{host}:{port}")
    else:
        port = socket.bind_to_random_port(f"tcp://{host}")
    return f"tcp://{host}:{port}"
