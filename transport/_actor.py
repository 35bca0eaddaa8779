"""SocketActor: a pykka actor that owns ZeroMQ sockets and is reachable as `actor://node/name`.

Its inbox (`SocketInbox`) reads its sockets in its own thread, so a message from the
network reaches the same `on_receive` as a local `tell` or `ask`, with no thread hop.

A SocketActor that listens binds a ROUTER; its node is that socket's `host:port`. It may
host other actors of its process by name (`host(name, ref)`), forwarding their messages
and sending their replies back. It answers `Ping`, keeps the watchers of the actors it
hosts, and tells them `Terminated` when one stops. It watches remote actors for its own
code (`watch(address)`), with heartbeats and its port's connection monitors.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pykka
import zmq
from actorcluster.transport._address import Address, node_of
from actorcluster.transport._guarded import GuardedActor, Later, as_remote_error
from actorcluster.transport._inbox import FdReady, Frames, SocketInbox
from actorcluster.transport._message import Message, Ping, Pong, Reply, Terminated, Unwatch, Watch
from actorcluster.transport._port import Port
from actorcluster.transport._session import Incoming, Item, Received, Session, WireError
from actorcluster.transport._zmqio import send_frames
from pykka._envelope import Envelope

from actorcluster.error import ActorStopped, UnknownActor

__all__ = ["SocketActor", "actor_of", "local_host"]

logger = logging.getLogger(__name__)

ReplyFn = Callable[[Item], None]

_FLUSH_ROUNDS = 3
_CONTROL = frozenset({Ping, Pong, Watch, Unwatch, Terminated})
_hosts: dict[str, SocketActor] = {}
_hosts_lock = threading.Lock()


def actor_of(ref: pykka.ActorRef[Any]) -> Any:
    """Return the actor behind `ref` (None once it is gone), for its address and such."""
    return ref._actor_weakref()


def local_host(node: str) -> SocketActor | None:
    """Return the actor of this process that listens as `node`, if any."""
    return _hosts.get(node)


@dataclass(frozen=True, slots=True)
class _SendReply:
    reply: ReplyFn
    cid: str
    value: Any
    error: BaseException | None


@dataclass(frozen=True, slots=True)
class _HostedStopped:
    name: str


@dataclass(frozen=True, slots=True)
class _Beat:
    pass


class _ForwardedReply(pykka.Future[Any]):
    """Carries a hosted actor's answer back to the host, which sends it to the asker."""

    def __init__(self, host: pykka.ActorRef[Any], reply: ReplyFn, cid: str) -> None:
        super().__init__()
        self._host, self._reply, self._cid = host, reply, cid

    def set(self, value: Any = None) -> None:
        self._host.tell(_SendReply(self._reply, self._cid, value, None))

    def set_exception(self, exc_info: Any = None) -> None:
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        if isinstance(error, pykka.ActorDeadError):
            error = ActorStopped(str(error))
        self._host.tell(_SendReply(self._reply, self._cid, None, as_remote_error(error)))


class SocketActor(GuardedActor):
    """An actor whose inbox also reads its sockets; optionally a listening node.

    Accepts: `Ping`, `Watch`, `Unwatch`, `Terminated` (for its watches) from the network,
    plus whatever `on_receive` of a subclass handles, locally or from the network.
    Emits: `Pong`, `Terminated`, replies to asks. Owns: a ROUTER (when listening), and a
    DEALER plus monitor per node it sends to.

    Args:
        session: signs and decodes its messages.
        name: its name at its node.
        listen: a `tcp://host:port` endpoint to bind (port 0 for any), or None.
        advertise: the host others should dial, when `listen` binds a wildcard.
        origin: the node id of an actor that does not listen (reachable over the
            connections it opens, as `actor://<origin>/<name>`).
        context: the ZeroMQ context (the process's shared one by default).
    """

    heartbeat_period: ClassVar[float] = 0.5
    heartbeat_misses: ClassVar[int] = 4
    verify_buffers: ClassVar[bool] = True  # False: buffers are forwarded unread (relays)

    def __init__(
        self,
        session: Session,
        *,
        name: str,
        listen: str | None = None,
        advertise: str | None = None,
        origin: str | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        super().__init__()
        self.session = session
        self.name = name
        self.context = context or zmq.Context.instance()
        self.inbox: SocketInbox = self.actor_inbox  # type: ignore[assignment]
        self.node: str | None = origin
        self.router: zmq.Socket[Any] | None = None
        if listen is not None:
            self.router = self.context.socket(zmq.ROUTER)
            self.router.linger = 1000
            self.router.router_mandatory = True
            self.router.bind(listen)
            self.node = node_of(str(self.router.get_string(zmq.LAST_ENDPOINT)), advertise)
            self.inbox.add_socket(self.router, self._on_router)
            with _hosts_lock:
                _hosts[self.node] = self
        self.address = str(Address(self.node or "local", name))
        self.hosted: dict[str, pykka.ActorRef[Any]] = {}
        self.incoming: Incoming | None = None  # the wire message being handled
        self._at = 0  # ... and the item of it
        self.port = Port(
            session,
            self.context,
            self.inbox.add_socket,
            self.inbox.remove_socket,
            origin=self.node,
            on_push=self._on_pushed,
            on_lost=lambda node: self._node_dead(node, "its connection dropped"),
            on_undelivered=self.on_undelivered,
        )
        self._routes: dict[str, list[bytes]] = {}
        self._watchers: dict[str, set[str]] = {}
        self._watching: dict[str, dict[str, pykka.ActorRef[Any]]] = {}
        self._last_seen: dict[str, float] = {}
        self._beating = False
        self._routed_out: dict[tuple[bytes, ...], list[Item]] = {}
        self._from = {"from": self.node} if self.node else None
        self.inbox.on_idle = self.flush

    @staticmethod
    def _create_actor_inbox() -> SocketInbox:
        return SocketInbox()

    # -- API for subclasses (actor thread) ----------------------------------------------
    def send(self, address: str, message: Message) -> None:
        """Tell `message` to the actor at `address`, wherever it is.

        Remote messages are batched and leave when this actor goes idle.
        """
        node, name = Address.parse(address)
        self.send_to(node, name, message)

    def send_to(self, node: str, name: str, message: Message) -> None:
        """`send` to the actor `name` at `node` (no address to parse: for hot paths)."""
        if node == self.node:
            self._dispatch(Item(name, None, message), None, node)
        elif node in self._routes:
            self._post_routed(tuple(self._routes[node]), Item(name, None, message))
        elif self.port.post(node, name, message) >= self.port.batch_limit:
            self.port.flush(node)

    def on_undelivered(self, node: str, items: list[Item]) -> None:
        """Messages that could not be sent: `node`'s connection is lost (override to act)."""
        logger.debug(
            "%s: dropped %d messages for %s: its connection is lost", self.name, len(items), node
        )

    def call_later(self, delay: float, message: Any) -> None:
        """Deliver `message` to this actor after `delay` seconds."""
        self.inbox.call_later(delay, message)

    def watch(self, address: str, notify: pykka.ActorRef[Any] | None = None) -> None:
        """Tell `notify` (this actor by default) `Terminated` when `address` stops."""
        if self.node is None:
            raise RuntimeError(
                f"{self.name}: only an actor with a node can watch (listen or origin)"
            )
        node, name = Address.parse(address)
        self._watching.setdefault(node, {})[address] = notify or self.actor_ref
        self._last_seen.setdefault(node, time.monotonic())
        self.send(str(Address(node, name)), Watch(name=name, watcher=self.address))
        if not self._beating:
            self._beating = True
            self.call_later(self.heartbeat_period, _Beat())

    def host(self, name: str, ref: pykka.ActorRef[Any]) -> None:
        """Make the local actor `ref` reachable as `actor://<this node>/<name>`. Any thread."""
        self.hosted[name] = ref
        actor = actor_of(ref)
        if isinstance(actor, GuardedActor):
            actor.add_stop_callback(lambda: self.actor_ref.tell(_HostedStopped(name)))

    def flush(self) -> None:
        """Send every batched message now (done anyway whenever the actor goes idle)."""
        for _ in range(_FLUSH_ROUNDS):  # what could not go may be posted again another way
            self.port.flush()  # (`on_undelivered`): send that too before the actor sleeps
            if not self.port.queued:
                break
        if self._routed_out:
            boxes, self._routed_out = self._routed_out, {}
            assert self.router is not None
            for idents, items in boxes.items():
                frames = self.session.pack(items, header=self._from)
                _send(self.router, [*idents, *frames])

    # -- dispatch -----------------------------------------------------------------------
    def _handle_receive(self, message: Any) -> Any:
        match message:
            case Frames():
                message.handler(message.frames)
                return None
            case FdReady():
                message.handler()
                return None
            case _SendReply():
                message.reply(
                    Item("", message.cid, Reply(value=message.value, error=message.error))
                )
                return None
            case _HostedStopped(name=name):
                self.hosted.pop(name, None)
                self._notify_watchers(name, "stopped")
                return None
            case _Beat():
                self._beat()
                return None
        return super()._handle_receive(message)

    def _on_router(self, frames: list[Any]) -> None:
        try:
            incoming = self.session.unpack(frames, verify_buffers=self.verify_buffers)
        except WireError as e:
            self.session.drop(e, self.address)
            return
        idents = tuple(incoming.idents)
        sender = incoming.header.get("from")
        if isinstance(sender, str):
            self._routes[sender] = incoming.idents
            self._last_seen[sender] = time.monotonic()

        def reply(item: Item) -> None:
            self._post_routed(idents, item)

        self.incoming = incoming
        try:
            for self._at, item in enumerate(incoming.items):
                self._dispatch(item, reply, sender)
        finally:
            self.incoming = None

    def received_as(self, message: Message) -> Received | None:
        """Where `message` came from, if it is the one being handled now and came from the
        network without out-of-band buffers; else None."""
        incoming = self.incoming
        if incoming is None or incoming.buffers or incoming.items[self._at].message is not message:
            return None
        content = incoming.content
        return (content if type(content) is bytes else _bytes(content), self._at)

    def _on_pushed(self, node: str, item: Item) -> None:
        self._last_seen[node] = time.monotonic()

        def reply(answer: Item) -> None:
            if self.port.post(node, answer.to, answer.message, answer.cid) >= self.port.batch_limit:
                self.port.flush(node)

        self._dispatch(item, reply, node)

    def _post_routed(self, idents: tuple[bytes, ...], item: Item) -> None:
        box = self._routed_out.get(idents)
        if box is None:
            box = self._routed_out[idents] = []
        box.append(item)
        if len(box) >= self.port.batch_limit:
            self.flush()

    def _dispatch(self, item: Item, reply: ReplyFn | None, sender: str | None) -> None:
        if self.port.resolve(item):
            return
        message = item.message
        if type(message) not in _CONTROL or self._control(message, reply):
            self._deliver_local(item.to, message, reply, item.cid)

    def _control(self, message: Message, reply: ReplyFn | None) -> bool:
        """Serve `Ping`, `Pong`, `Watch`, `Unwatch`, `Terminated` (for its watches); True
        for a `Terminated` that is not for a watch of its own (the recipient gets it)."""
        match message:
            case Ping():
                if reply is not None:
                    reply(Item("", None, Pong()))
            case Pong():
                pass
            case Watch(name=name, watcher=watcher):
                if name == self.name or name in self.hosted:
                    self._watchers.setdefault(name, set()).add(watcher)
                else:
                    self.send(
                        watcher, Terminated(address=self._address_of(name), reason="no such actor")
                    )
            case Unwatch(name=name, watcher=watcher):
                self._watchers.get(name, set()).discard(watcher)
            case Terminated(address=address):
                node = Address.parse(address).node
                notify = self._watching.get(node, {}).pop(address, None)
                if notify is None or notify is self.actor_ref:
                    return True
                notify.tell(message)
        return False

    def _deliver_local(
        self, name: str, message: Message, reply: ReplyFn | None, cid: str | None = None
    ) -> None:
        if name == self.name:
            try:
                # a `Message`: never pykka's own (stop, proxy calls) nor a local-only type
                # that `_handle_receive` serves, so straight to the handler
                value, error = self.on_receive(message), None
            except BaseException as e:  # noqa: BLE001 - contained: answered or logged
                value, error = None, as_remote_error(e)
                if cid is None:
                    logger.warning("%s failed on %s: %r", self.name, type(message).__name__, e)
            if cid is not None and reply is not None:
                if isinstance(value, Later):
                    value.bind(lambda v, e: reply(Item("", cid, Reply(value=v, error=e))))
                else:
                    reply(Item("", cid, Reply(value=value, error=error)))
            return
        ref = self.hosted.get(name)
        if ref is None or not ref.is_alive():
            unknown = UnknownActor(
                f"no actor named {name!r} at {self._address_of('')} (stopped, or never started)"
            )
            if cid is not None and reply is not None:
                reply(Item("", cid, Reply(error=unknown)))
            else:
                logger.debug("dropped %s for unknown actor %r", type(message).__name__, name)
            return
        future = _ForwardedReply(self.actor_ref, reply, cid) if cid and reply else None
        ref.actor_inbox.put(Envelope(message, reply_to=future))

    # -- watching -----------------------------------------------------------------------
    def _beat(self) -> None:
        now = time.monotonic()
        limit = self.heartbeat_period * self.heartbeat_misses
        for node in list(self._watching):
            if node == self.node:
                continue  # local stops are reported by stop callbacks, not heartbeats
            if not self._watching[node]:
                del self._watching[node]
            elif now - self._last_seen.get(node, now) > limit:
                self._node_dead(node, f"no answer for {limit:.1f} s")
            else:
                self.send(str(Address(node, "")), Ping())
        self._beating = bool(self._watching)
        if self._beating:
            self.call_later(self.heartbeat_period, _Beat())

    def _node_dead(self, node: str, why: str) -> None:
        self._routes.pop(node, None)
        self._last_seen.pop(node, None)
        for address, notify in self._watching.pop(node, {}).items():
            try:
                notify.tell(Terminated(address=address, reason=f"node unreachable: {why}"))
            except pykka.ActorDeadError:  # the watcher stopped (this actor, stopping now)
                pass

    def _notify_watchers(self, name: str, reason: str) -> None:
        for watcher in self._watchers.pop(name, ()):
            try:
                self.send(watcher, Terminated(address=self._address_of(name), reason=reason))
            except (zmq.ZMQError, ValueError) as e:
                logger.debug("could not tell %s that %s stopped: %s", watcher, name, e)

    def _address_of(self, name: str) -> str:
        return str(Address(self.node or "local", name))

    def _after_stop(self) -> None:
        for name in [self.name, *self._watchers]:
            self._notify_watchers(name, "stopped")
        if self.node is not None:
            with _hosts_lock:
                if _hosts.get(self.node) is self:
                    del _hosts[self.node]
        try:
            self.flush()
        finally:
            self.port.close()
            self.inbox.close(linger=200)


def _bytes(frame: Any) -> bytes:
    """A frame's bytes (a zmq.Frame keeps them: asked again, the same object)."""
    data = getattr(frame, "bytes", None)
    return data if isinstance(data, bytes) else bytes(frame)


def _send(router: zmq.Socket[Any], frames: list[Any]) -> None:
    try:
        send_frames(router, frames)
    except zmq.ZMQError as e:
        if e.errno != zmq.EHOSTUNREACH:
            raise
        logger.debug("peer %r is gone; dropped a message to it", frames[0])
