"""An actor inbox that multiplexes in-process puts, ZeroMQ sockets and timers.

pykka's actor loop calls `get()` from the actor's own thread; any thread may `put()`.
`get()` returns, in turn, a queued local envelope, a message read off one of the actor's
sockets, or a timer that fell due. When there is nothing, the owner sleeps in `zmq.poll`
on its sockets plus an eventfd; `put()` writes the eventfd only while the owner sleeps,
so a busy actor pays no system call per local message. Before it sleeps it calls
`on_idle`, where the actor sends what it batched while busy.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq
from actorcluster.transport._zmqio import readable, recv_frames
from pykka._envelope import Envelope

__all__ = ["FdReady", "Frames", "SocketInbox", "Waker"]

Handler = Callable[[list[Any]], None]


@dataclass(frozen=True, slots=True)
class Frames:
    """A multipart message read off a socket, with the handler registered for that socket."""

    handler: Handler
    frames: list[Any]


@dataclass(frozen=True, slots=True)
class FdReady:
    """A watched file descriptor is readable; call the handler registered for it."""

    handler: Callable[[], None]


class Waker:
    """An eventfd (or a pipe where there is none) to interrupt a poll."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # no wake after close: the fd number may be reused
        self._closed = False
        if hasattr(os, "eventfd"):
            self.fd = self._wfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - non-Linux
            self.fd, self._wfd = os.pipe()
            os.set_blocking(self.fd, False)

    def wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                os.write(self._wfd, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except BlockingIOError:
                pass  # already signalled

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            os.close(self.fd)
            if self._wfd != self.fd:
                os.close(self._wfd)


class SocketInbox:
    """A pykka inbox whose owner also reads its ZeroMQ sockets and timers."""

    def __init__(self) -> None:
        self.on_idle: Callable[[], None] | None = None
        self._local: deque[Envelope[Any]] = deque()
        self._waiting = False
        self._waker = Waker()
        self._poller = zmq.Poller()
        self._poller.register(self._waker.fd, zmq.POLLIN)
        self._sockets: dict[zmq.Socket[Any], Handler] = {}
        self._timers: list[tuple[float, int, Any]] = []
        self._fds: dict[int, Callable[[], None]] = {}
        self._seq = itertools.count()
        self._sockets_turn = False
        self._ready: deque[zmq.Socket[Any]] = deque()
        self._polled: set[zmq.Socket[Any]] = set()  # readable by the last poll, not read since

    # -- the pykka inbox protocol -------------------------------------------------------
    def put(
        self, envelope: Envelope[Any], block: bool = True, timeout: float | None = None
    ) -> None:
        """Queue a local envelope; wake the owner if it sleeps. Safe from any thread."""
        self._local.append(envelope)
        if self._waiting:
            self._waker.wake()

    def empty(self) -> bool:
        """Whether no local envelope is queued (pykka drains these on stop)."""
        return not self._local

    def get(self, block: bool = True, timeout: float | None = None) -> Envelope[Any]:
        """Return the next envelope, sleeping until there is one. Owner thread only."""
        while True:
            if self._timers and self._timers[0][0] <= time.monotonic():
                return Envelope(heapq.heappop(self._timers)[2])
            self._sockets_turn = not self._sockets_turn
            if self._sockets_turn:
                if not self._ready and self._local:
                    self._poll(0)  # a busy local stream must not starve the sockets
                got = self._read_ready()
                if got is not None:
                    return got
            if self._local:
                return self._local.popleft()
            got = self._read_ready()
            if got is not None:
                return got
            if self.on_idle is not None:
                self.on_idle()  # e.g. flush the replies batched during the burst
                if self._local or self._ready:
                    continue
            self._sleep()

    # -- the owner's side ---------------------------------------------------------------
    def add_socket(self, socket: zmq.Socket[Any], handler: Handler) -> None:
        """Read `socket` from now on; each message goes to `handler` in the actor's thread."""
        self._sockets[socket] = handler
        self._poller.register(socket, zmq.POLLIN)

    def add_fd(self, fd: int, handler: Callable[[], None]) -> None:
        """Call `handler()` in the actor's thread whenever `fd` is readable."""
        self._fds[fd] = handler
        self._poller.register(fd, zmq.POLLIN)

    def remove_fd(self, fd: int) -> None:
        """Stop watching `fd` (it is not closed)."""
        if self._fds.pop(fd, None) is not None:
            self._poller.unregister(fd)

    def remove_socket(self, socket: zmq.Socket[Any]) -> None:
        """Stop reading `socket` (it is not closed)."""
        if self._sockets.pop(socket, None) is not None:
            self._poller.unregister(socket)
            if socket in self._ready:
                self._ready.remove(socket)
            self._polled.discard(socket)

    def call_later(self, delay: float, message: Any) -> None:
        """Deliver `message` to the actor after `delay` seconds. Owner thread only."""
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), message))

    def close(self, linger: int = 0) -> None:
        """Close every socket (flushing for up to `linger` ms) and the wake-up fd."""
        for socket in list(self._sockets):
            self.remove_socket(socket)
            socket.close(linger=linger)
        self._waker.close()

    def _read_ready(self) -> Envelope[Any] | None:
        ready, polled = self._ready, self._polled
        while ready:
            socket = ready.popleft()
            if socket in polled:
                polled.discard(socket)
            elif not readable(socket):
                continue
            try:
                frames = recv_frames(socket)
            except zmq.Again:  # the poll's word went stale: nothing to read after all
                continue
            ready.append(socket)  # more may wait: its turn comes again after the others
            return Envelope(Frames(self._sockets[socket], frames))
        return None

    def _sleep(self) -> None:
        self._waiting = True
        try:
            if self._local:
                return
            timeout = None
            if self._timers:
                timeout = max(0, math.ceil((self._timers[0][0] - time.monotonic()) * 1000.0))
            self._poll(timeout)
        finally:
            self._waiting = False

    def _poll(self, timeout: int | None) -> None:
        for item, _ in self._poller.poll(timeout):
            if item == self._waker.fd:
                self._waker.clear()
            elif item in self._fds:
                self._local.append(Envelope(FdReady(self._fds[item])))
            elif item in self._sockets:
                self._polled.add(item)
                if item not in self._ready:
                    self._ready.append(item)
