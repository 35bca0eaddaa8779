"""RemoteRef: `tell` and `ask` an actor by address, from any thread, in or out of process.

A plain thread sends on sockets of its own (its `ThreadPort`, one per thread and session),
so an ask from client code costs one network round trip and no thread hop. An address
on a node of this very process is delivered with a pykka tell, without sockets.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
import weakref
from collections import deque
from typing import Any

import zmq
from actorcluster.transport._actor import SocketActor, local_host
from actorcluster.transport._address import Address
from actorcluster.transport._future import ReplyFuture
from actorcluster.transport._inbox import Waker
from actorcluster.transport._message import Message
from actorcluster.transport._port import Port
from actorcluster.transport._session import Session
from actorcluster.transport._zmqio import readable, recv_frames
from pykka._envelope import Envelope

from actorcluster.error import UnknownActor

__all__ = ["RemoteRef", "ThreadPort"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
_SLICE = 0.05  # seconds a waiting thread holds its port before letting a sender in


class _Flusher:
    """One daemon thread per process that sends what plain threads told, in batches.

    A tell from a plain thread is queued; the first of a burst wakes this thread, which
    sends everything queued by then as one wire message. A tight loop of tells therefore
    costs a pickle and an append each, not a signature and a system call each.
    """

    def __init__(self) -> None:
        self._dirty: deque[ThreadPort] = deque()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def schedule(self, port: ThreadPort) -> None:
        with self._wake:
            self._dirty.append(port)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="actorcluster-flusher", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._dirty:
                    self._wake.wait()
                port = self._dirty.popleft()
            try:
                port.flush()
            except Exception:
                logger.exception("could not send queued messages")


_flusher = _Flusher()


class ThreadPort:
    """The sockets of one plain thread; a waiting `get()` reads them.

    Any thread may wait on a future of this port: a lock keeps the sockets to one thread
    at a time. Tells are queued and sent in batches by the process's flusher thread;
    an ask first sends what is queued, so order is kept.
    """

    _local = threading.local()

    def __init__(self, session: Session, context: zmq.Context[Any] | None = None) -> None:
        self._lock = threading.RLock()
        self._poller = zmq.Poller()
        self._waker = Waker()  # another thread ends a wait that `cancel` made pointless
        self._poller.register(self._waker.fd, zmq.POLLIN)
        weakref.finalize(self, self._waker.close)
        # the identity of this port's connections made with `dial`: unique per port
        self.identity = f"{session.session}/{uuid.uuid4().hex[:12]}".encode()
        self._handlers: dict[zmq.Socket[Any], Any] = {}
        self.port = Port(
            session,
            context or zmq.Context.instance(),
            self._add,
            self._remove,
            driver=self._drive,
        )

    @classmethod
    def of_thread(cls, session: Session) -> ThreadPort:
        """Return the calling thread's port for `session`, creating it once."""
        ports: dict[int, ThreadPort] | None = getattr(cls._local, "ports", None)
        if ports is None:
            ports = cls._local.ports = {}
        port = ports.get(id(session))
        if port is None or port.port.session is not session:
            port = ports[id(session)] = cls(session)
        return port

    def send(self, node: str, name: str, message: Message) -> None:
        queued = self.port.post(node, name, message)
        if queued == 1:
            _flusher.schedule(self)
        elif queued >= self.port.batch_limit:
            self.flush()  # a sender faster than the wire waits here instead of queueing more

    def send_now(self, node: str, name: str, message: Message) -> None:
        """Send `message` from this thread now (after what is queued for `node`)."""
        with self._lock:
            self.port.send(node, name, message)

    @classmethod
    def discard(cls, session: Session) -> None:
        """Close the calling thread's port for `session`, if it has one."""
        port = getattr(cls._local, "ports", {}).pop(id(session), None)
        if port is not None:
            port.close()

    def flush(self) -> None:
        """Send what is queued."""
        with self._lock:
            self.port.flush()

    def dial(self, node: str) -> None:
        """Connect to `node` as `identity` (see `Port.dial`)."""
        with self._lock:
            self.port.dial(node, self.identity)

    def connected(self, node: str) -> bool:
        """Whether this port's connection to `node` is up (as of the last look at it:
        `check_connections`, or a wait on this port)."""
        return self.port.connected(node)

    def check_connections(self) -> None:
        """Look at what the connection monitors report now."""
        with self._lock:
            self.port.check_connections()

    def expect(self, node: str, description: str, timeout: float) -> tuple[str, ReplyFuture]:
        """An ask whose request leaves another way (see `Port.expect`)."""
        with self._lock:
            return self.port.expect(node, description, timeout)

    def cancel(self, cid: str, error: BaseException) -> None:
        """Fail the ask `cid` if it still waits, and wake the thread waiting on it. Any thread."""
        if self.port.cancel(cid, error):
            self._waker.wake()

    def ask(self, node: str, name: str, message: Message, timeout: float) -> ReplyFuture:
        with self._lock:
            return self.port.ask(node, name, message, timeout)

    def close(self) -> None:
        """Close the sockets; asks still waiting fail."""
        with self._lock:
            self.port.close()

    def _add(self, socket: zmq.Socket[Any], handler: Any) -> None:
        self._handlers[socket] = handler
        self._poller.register(socket, zmq.POLLIN)

    def _remove(self, socket: zmq.Socket[Any]) -> None:
        if self._handlers.pop(socket, None) is not None:
            self._poller.unregister(socket)

    def _drive(self, future: ReplyFuture, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not future.done():
            with self._lock:
                until_expiry = self.port.expire()
                if future.done():
                    return
                wait = _SLICE if until_expiry is None else min(until_expiry, _SLICE)
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return
                self._read(max(0, math.ceil(wait * 1000.0)))

    def sweep(self) -> None:
        """Read this port's sockets now, unless its owner (or another thread) is at it.
        Any thread: answers to asks that came after their waiter gave up (an interrupt,
        a timeout) still resolve them. (The lock hands the sockets over safely.)"""
        if not self.port.pending or not self._lock.acquire(blocking=False):
            return
        try:
            self._read(0)
        finally:
            self._lock.release()

    def _read(self, timeout_ms: int) -> None:
        """Wait up to `timeout_ms` for messages and handle those that came (lock held)."""
        for socket, _ in self._poller.poll(timeout_ms):
            if socket == self._waker.fd:
                self._waker.clear()
                continue
            handler = self._handlers.get(socket)
            while handler is not None:  # the poll says one message waits; more may
                try:
                    frames = recv_frames(socket)
                except zmq.Again:  # the poll's word went stale
                    break
                handler(frames)
                handler = self._handlers.get(socket)
                if handler is None or not readable(socket):
                    break


class RemoteRef:
    """A reference to the actor at `actor://node/name`, with pykka's `tell`/`ask` shape.

    Args:
        address: the actor's address.
        session: the session (key) of the cluster the actor belongs to.
    """

    def __init__(self, address: str, session: Session) -> None:
        self.address = Address.parse(address)
        self.session = session

    def __repr__(self) -> str:
        return f"RemoteRef({str(self.address)!r})"

    def tell(self, message: Message) -> None:
        """Send `message` to the actor; do not wait for anything."""
        node = self.address.node
        host = local_host(node)
        if host is not None:
            self._local_ref(host).tell(message)
            return
        ThreadPort.of_thread(self.session).send(node, self.address.name, message)

    def ask(
        self, message: Message, *, block: bool = False, timeout: float | None = DEFAULT_TIMEOUT
    ) -> Any:
        """Send `message` and return a future of the reply (the reply itself if `block`).

        The ask fails with `AskTimeout` after `timeout` seconds, with `UnknownActor` if
        nothing of that name lives there, with `NodeUnreachable` if the node went away,
        and with `RemoteError` if the actor's handler raised.
        """
        limit = DEFAULT_TIMEOUT if timeout is None else timeout
        host = local_host(self.address.node)
        if host is not None:
            future = ReplyFuture(str(self.address))
            ref = self._local_ref(host)
            if not ref.is_alive():
                future.fail(
                    UnknownActor(
                        f"no actor named {self.address.name!r} at {self.address} (stopped)"
                    )
                )
            else:
                ref.actor_inbox.put(Envelope(message, reply_to=future))
        else:
            port = ThreadPort.of_thread(self.session)
            future = port.ask(self.address.node, self.address.name, message, limit)
        return future.get(timeout=limit) if block else future

    def _local_ref(self, host: SocketActor) -> Any:
        name = self.address.name
        ref = host.actor_ref if name == host.name else host.hosted.get(name)
        if ref is None:
            raise UnknownActor(f"no actor named {name!r} at {self.address}")
        return ref
