"""Outbound connections of one thread: a DEALER per node and the asks awaiting replies.

A `Port` belongs to one thread. A `SocketActor` reads its port's sockets from its inbox;
a plain thread (client code, tests) drives its port while it waits on a `ReplyFuture`.
Every DEALER has a monitor socket: when the peer's connection drops, or nothing listens
at its address, the asks waiting on that node fail at once with `NodeUnreachable`
instead of running into their timeout.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import zmq
from actorcluster.transport._address import Address
from actorcluster.transport._future import Driver, ReplyFuture
from actorcluster.transport._message import Message, Reply
from actorcluster.transport._session import Item, Session, WireError, _item
from actorcluster.transport._zmqio import NOBLOCK, recv_frames, send_frames
from zmq.utils.monitor import parse_monitor_message

from actorcluster.error import AskTimeout, NodeUnreachable

__all__ = ["Port"]

logger = logging.getLogger(__name__)

# With reconnection off, a DEALER reports at most two of these (connected, then lost): a
# monitor that nobody reads for a while cannot fill up. (libzmq sends monitor events
# blocking, from its I/O thread: a full monitor pipe would stall every socket of the process.)
_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
_monitors = itertools.count()
_SEND_WAIT_MS = 1000  # how long a send to a full queue waits between looks at the monitor
_CONNECT_TIMEOUT_MS = 5000  # a node that takes longer to accept a connection is unreachable


def _close_connection(sockets: tuple[zmq.Socket[Any], zmq.Socket[Any]]) -> None:
    """Close a DEALER and its monitor's reader, the monitor first.

    libzmq writes monitor events blocking, from its I/O thread: an event that comes (the
    connection drops, a connect is torn down) after the reader is gone would block that
    thread, and every socket of the process with it, for good.
    """
    dealer, monitor = sockets
    try:
        if not dealer.closed:
            dealer.disable_monitor()
            dealer.close(linger=0)
        monitor.close(linger=0)
    except zmq.ZMQError as e:  # the context is already gone (interpreter exit)
        logger.debug("closing a connection: %s", e)


def _close_connections(dealers: dict[str, tuple[zmq.Socket[Any], zmq.Socket[Any]]]) -> None:
    for sockets in list(dealers.values()):
        _close_connection(sockets)
    dealers.clear()


def _ignore(*_: Any) -> None:
    """For a port whose owner never reads replies (it only sends)."""


class _Pending:
    __slots__ = ("deadline", "future", "node")

    def __init__(self, future: ReplyFuture, node: str, deadline: float) -> None:
        self.future = future
        self.node = node
        self.deadline = deadline


class Port:
    """A thread's outbound sockets, its outbox and its pending asks.

    Messages are queued per node and sent by `flush()`, many to a wire message; the owner
    flushes when it goes idle, so a burst costs one signature and one send per node.

    Args:
        session: signs and decodes messages.
        context: the ZeroMQ context to create sockets in (the process's shared one).
        on_socket: called with each new socket and the handler of its messages; the owner
            must read that socket and pass each multipart message to the handler. None for
            a port that only sends.
        off_socket: called with a socket the port is about to close.
        origin: this thread's own node (`host:port`) if it listens, sent as `from`.
        on_push: called with each message from a node that is not a reply to an ask.
        on_lost: called with a node whose connection dropped.
        on_undelivered: called with a node and the items that could not be sent to it
            because its connection was lost (by default they are dropped).
        driver: how a `ReplyFuture` of this port waits (plain threads drive the port).
    """

    batch_limit: int = 256

    def __init__(
        self,
        session: Session,
        context: zmq.Context[Any] | None = None,
        on_socket: Callable[[zmq.Socket[Any], Callable[[list[Any]], None]], None] | None = None,
        off_socket: Callable[[zmq.Socket[Any]], None] | None = None,
        *,
        origin: str | None = None,
        on_push: Callable[[str, Item], None] | None = None,
        on_lost: Callable[[str], None] | None = None,
        on_undelivered: Callable[[str, list[Item]], None] | None = None,
        driver: Driver | None = None,
    ) -> None:
        self.session = session
        self.origin = origin
        self._header = {"from": origin} if origin else None
        self._context = context or zmq.Context.instance()
        self._on_socket = on_socket or _ignore
        self._off_socket = off_socket or _ignore
        self._on_push = on_push
        self._on_lost = on_lost
        self._on_undelivered = on_undelivered
        self._driver = driver
        self._dealers: dict[str, tuple[zmq.Socket[Any], zmq.Socket[Any]]] = {}
        # what was sent to a node before its connection was made: lost if it never is
        self._unconfirmed: dict[str, list[Item]] = {}
        self._outbox: dict[str, list[Item]] = {}
        self._outbox_lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._identities: dict[str, bytes] = {}  # node -> the identity we connect to it as
        self._cids = itertools.count()
        # a port dropped without close() (its thread ended) closes its sockets safely
        weakref.finalize(self, _close_connections, self._dealers)

    # -- sending ------------------------------------------------------------------------
    def post(self, node: str, name: str, message: Message, cid: str | None = None) -> int:
        """Queue `message` for actor `name` at `node`; return how many wait for that node.

        The caller flushes: at once when the count reaches `batch_limit`, else later.
        """
        with self._outbox_lock:
            box = self._outbox.get(node)
            if box is None:
                box = self._outbox[node] = []
            box.append(_item((name, cid, message)))
            return len(box)

    def send(self, node: str, name: str, message: Message, *, cid: str | None = None) -> None:
        """Send `message` to actor `name` at `node` now (after what is queued for it)."""
        self.post(node, name, message, cid)
        self.flush(node)

    def ask(self, node: str, name: str, message: Message, timeout: float = 10.0) -> ReplyFuture:
        """Send `message` as an ask now; the returned future gets the reply."""
        cid, future = self.expect(node, f"actor://{node}/{name}", timeout)
        try:
            self.send(node, name, message, cid=cid)
        except Exception:
            del self._pending[cid]
            raise
        return future

    def dial(self, node: str, identity: bytes) -> None:
        """Connect to `node` now, as `identity`: its ROUTER may then send to this port by
        that identity (answers to asks that went another way, see `expect`)."""
        self._identities[node] = identity
        self._dealer(node)

    def expect(self, node: str, description: str, timeout: float) -> tuple[str, ReplyFuture]:
        """An ask whose request leaves some other way (naming the returned cid): its answer
        may come on any connection of this port. Fails like an ask if `node` goes away."""
        cid = f"{self.session.session}:{next(self._cids)}"
        future = ReplyFuture(description, self._driver)
        self._pending[cid] = _Pending(future, node, time.monotonic() + timeout)
        return cid, future

    def cancel(self, cid: str, error: BaseException) -> bool:
        """Fail the ask `cid` with `error` if it still waits (any thread); whether it did."""
        pending = self._pending.pop(cid, None)
        if pending is None:
            return False
        pending.future.fail(error)
        return True

    def flush(self, node: str | None = None) -> None:
        """Send what is queued, for `node` or for every node."""
        with self._outbox_lock:
            if node is None:
                boxes, self._outbox = self._outbox, {}
            else:
                box = self._outbox.pop(node, None)
                boxes = {node: box} if box else {}
        for target, items in boxes.items():
            if items:
                self._deliver(target, self.session.pack(items, header=self._header), items)

    @property
    def connecting(self) -> bool:
        """Whether messages went to connections not yet confirmed (`check_connections`)."""
        return any(self._unconfirmed.values())

    def connected(self, node: str) -> bool:
        """Whether a connection to `node` is up (a hint for other threads: it may drop)."""
        return node in self._dealers and node not in self._unconfirmed

    @property
    def queued(self) -> bool:
        """Whether messages wait in the outbox."""
        return bool(self._outbox)

    # -- receiving ----------------------------------------------------------------------
    def resolve(self, item: Item) -> bool:
        """Resolve the ask that `item` answers; False if it is not a reply."""
        if type(item.message) is not Reply:
            return False
        pending = self._pending.pop(item.cid or "", None)
        if pending is None:
            logger.debug("reply to an ask that is gone (timed out?): %s", item.cid)
            return True
        reply: Reply = item.message
        if reply.error is not None:
            pending.future.fail(reply.error)
        else:
            pending.future.set(reply.value)
        return True

    def expire(self) -> float | None:
        """Fail asks past their deadline; return seconds until the next deadline, if any."""
        now = time.monotonic()
        soonest: float | None = None
        for cid, pending in list(self._pending.items()):
            if pending.deadline <= now:
                del self._pending[cid]
                pending.future.fail(
                    AskTimeout(
                        f"no reply from {pending.future.description} within its timeout; "
                        "the actor may be busy or its node down"
                    )
                )
            elif soonest is None or pending.deadline - now < soonest:
                soonest = pending.deadline - now
        return soonest

    def lost(self, node: str, why: str) -> None:
        """Forget the connection to `node` and fail the asks waiting on it."""
        self._unconfirmed.pop(node, None)
        sockets = self._dealers.pop(node, None)
        if sockets is not None:
            for socket in sockets:
                self._off_socket(socket)
            _close_connection(sockets)
        for cid, pending in list(self._pending.items()):
            if pending.node == node:
                del self._pending[cid]
                pending.future.fail(NodeUnreachable(f"{pending.future.description}: {why}"))
        if self._on_lost is not None:
            self._on_lost(node)

    def close(self) -> None:
        """Send what is queued, then close every socket; asks still waiting fail."""
        self.flush()
        for node in list(self._dealers):
            self.lost(node, "the sender closed its connections")

    @property
    def pending(self) -> int:
        """Number of asks awaiting a reply."""
        return len(self._pending)

    def _dealer(self, node: str) -> zmq.Socket[Any]:
        sockets = self._dealers.get(node)
        if sockets is not None:
            return sockets[0]
        if not Address.dialable(node):
            raise NodeUnreachable(
                f"cannot connect to node {node!r}: it does not listen and has no route here"
            )
        dealer: zmq.Socket[Any] = self._context.socket(zmq.DEALER)
        dealer.linger = 1000
        dealer.reconnect_ivl = -1  # a lost connection is replaced by a new DEALER
        dealer.connect_timeout = _CONNECT_TIMEOUT_MS
        identity = self._identities.get(node)
        if identity is not None:
            dealer.routing_id = identity
        # a unique endpoint: pyzmq's default names it after the socket's fd, which a new
        # socket may reuse before the old monitor's endpoint is gone
        endpoint = f"inproc://monitor-{next(_monitors)}-{id(self):x}"
        dealer.monitor(endpoint, _EVENTS)
        monitor: zmq.Socket[Any] = self._context.socket(zmq.PAIR)
        monitor.connect(endpoint)
        dealer.connect(f"tcp://{node}")
        self._dealers[node] = (dealer, monitor)
        self._unconfirmed[node] = []
        self._on_socket(dealer, lambda frames: self._on_dealer(node, frames))
        self._on_socket(monitor, lambda frames: self._on_monitor(node, frames))
        return dealer

    def _deliver(self, node: str, frames: list[Any], items: list[Item]) -> None:
        """Send `frames` to `node`, waiting while its queue is full, never on a lost node.

        A DEALER whose connection dropped has nowhere to queue (it does not reconnect): a
        blocking send would wait forever. So the send waits until the DEALER can take the
        message or its monitor reports the loss (the asks waiting on `node` fail). Then it
        tries once more on a fresh connection: the node may be back at the same address
        (a restarted controller). What still cannot go is `on_undelivered`'s, or dropped.
        """
        for _ in range(2):
            if self._send_or_lose(node, frames):
                unconfirmed = self._unconfirmed.get(node)
                if unconfirmed is not None:
                    unconfirmed.extend(items)
                    self._read_monitor(node)  # its owner may not: stop tracking once connected
                return
        self._undelivered(node, items)

    def _undelivered(self, node: str, items: list[Item]) -> None:
        if self._on_undelivered is not None:
            self._on_undelivered(node, items)
        else:
            logger.debug("dropped %d messages for %s: its connection is lost", len(items), node)

    def check_connections(self) -> None:
        """Handle what every connection monitor holds now: for an owner that does not
        read them (it only sends), so a connection that failed reports its messages."""
        for node in list(self._dealers):
            self._read_monitor(node)

    def _read_monitor(self, node: str) -> None:
        """Handle the events `node`'s monitor holds now."""
        sockets = self._dealers.get(node)
        while sockets is not None and sockets[1].poll(0):
            self._on_monitor(node, recv_frames(sockets[1]))
            sockets = self._dealers.get(node)

    def _send_or_lose(self, node: str, frames: list[Any]) -> bool:
        """Send on `node`'s DEALER; False once its monitor reported the connection lost."""
        dealer = self._dealer(node)
        try:
            send_frames(dealer, frames, NOBLOCK)
            return True
        except zmq.Again:
            pass
        monitor = self._dealers[node][1]
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLOUT)
        poller.register(monitor, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(_SEND_WAIT_MS))
            if monitor in ready:
                self._on_monitor(node, recv_frames(monitor))
                if node not in self._dealers:
                    return False
            try:
                send_frames(dealer, frames, NOBLOCK)
                return True
            except zmq.Again:
                continue

    def _on_dealer(self, node: str, frames: list[Any]) -> None:
        try:
            incoming = self.session.unpack(frames)
        except WireError as e:
            self.session.drop(e, f"connection to {node}")
            return
        for item in incoming.items:
            if self.resolve(item):
                continue
            if self._on_push is not None:
                self._on_push(node, item)
            else:
                logger.debug("dropped a message pushed by %s to a port that serves none", node)

    def _on_monitor(self, node: str, frames: list[Any]) -> None:
        event = parse_monitor_message([bytes(f) for f in frames])["event"]
        if event == zmq.EVENT_CONNECTED:
            self._unconfirmed.pop(node, None)
        elif event == zmq.EVENT_DISCONNECTED:
            self.lost(node, "its connection dropped (process gone?)")
        elif event == zmq.EVENT_CLOSED:  # the connecting socket gave up: nothing was sent
            never_sent = self._unconfirmed.pop(node, [])
            self.lost(node, "nothing listens at its address")
            if never_sent:
                self._undelivered(node, never_sent)
