"""The transport: sockets, wire format, serialization and connection files.

Everything that knows about ZeroMQ or bytes lives here; nothing else imports `zmq`.
"""

from __future__ import annotations

from actorcluster.transport._actor import SocketActor, actor_of, local_host
from actorcluster.transport._address import Address, listen_toward
from actorcluster.transport._connection import (
    load_connection_file,
    new_key,
    write_connection_file,
)
from actorcluster.transport._future import ReplyFuture
from actorcluster.transport._guarded import GuardedActor, Later, as_remote_error
from actorcluster.transport._heartbeat import Heart, Pulse
from actorcluster.transport._inbox import SocketInbox, Waker
from actorcluster.transport._listener import Listener
from actorcluster.transport._message import (
    Message,
    Ping,
    Pong,
    Reply,
    Terminated,
    Unwatch,
    Watch,
    message_class,
)
from actorcluster.transport._port import Port
from actorcluster.transport._pubsub import Publisher, Subscriber
from actorcluster.transport._ref import RemoteRef, ThreadPort
from actorcluster.transport._serialize import (
    Payload,
    bind,
    call_serialized,
    deserialize,
    interactive,
    namespace_of_thread,
    serialize,
)
from actorcluster.transport._session import (
    DELIM,
    Incoming,
    Item,
    Limits,
    Received,
    ReplayGuard,
    Session,
    WireError,
    received_message,
)
from zmq import ZMQError as SocketError  # a socket could not bind, connect, send...

__all__ = [
    "DELIM",
    "Address",
    "GuardedActor",
    "Heart",
    "Incoming",
    "Item",
    "Later",
    "Limits",
    "Listener",
    "Message",
    "Payload",
    "Ping",
    "Pong",
    "Port",
    "Publisher",
    "Pulse",
    "Received",
    "RemoteRef",
    "ReplayGuard",
    "Reply",
    "ReplyFuture",
    "Session",
    "SocketActor",
    "SocketError",
    "SocketInbox",
    "Subscriber",
    "Terminated",
    "ThreadPort",
    "Unwatch",
    "Waker",
    "Watch",
    "WireError",
    "actor_of",
    "as_remote_error",
    "bind",
    "call_serialized",
    "deserialize",
    "interactive",
    "listen_toward",
    "load_connection_file",
    "local_host",
    "message_class",
    "namespace_of_thread",
    "new_key",
    "received_message",
    "serialize",
    "write_connection_file",
]
