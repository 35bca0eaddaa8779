"""The executor: the thread of an engine that runs user code, one request at a time.

It reads requests from the engine actor's queue and from a socket of its own (where the
scheduler sends and clients ask), runs them in the engine's `Kernel`, and sends each result
where it must go: to its client (on the client thread's own connection when it asked, or
when `answer` names one), with a copy to the relay or scheduler; it holds results while the
controller is away, and routes them through the controller for a client it cannot reach.

Order: requests from the engine actor's queue and from the socket run in the order they
are read; an abort that names a request not read yet answers it at once and has it dropped
when read (`_aborted`). What it posted leaves once no request waits (also when an abort
took the rest). Final results stay in `_unrecorded` until the task database confirms them
(`recorded`), and go to a restarted controller's database (`Redeliver`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, replace

from actorcluster.actors.bounded import remember
from actorcluster.actors.kernel import Kernel
from actorcluster.actors.messages import (
    Apply,
    Bounced,
    Execute,
    Pull,
    Push,
    Queued,
    Redeliver,
    TaskResult,
    answers_client,
    not_run,
    relay_copy,
)
from actorcluster.transport import (
    Address,
    Item,
    Listener,
    Message,
    Port,
    Reply,
    Session,
)

from actorcluster.error import TaskAborted

__all__ = ["Executor", "aborted"]

logger = logging.getLogger(__name__)

_WATCH_EVERY = 0.25  # seconds between looks at connections being made, while idle
_VIA_LIMIT = 10_000  # results remembered for a resend through the controller


class _Resume:
    """Queued for the executor: the controller is back, send the results held meanwhile."""


@dataclass(frozen=True, slots=True)
class _Asked:
    """A request asked of the executor on its own socket: the result is the answer."""

    request: Apply | Execute | Push | Pull
    idents: tuple[bytes, ...]
    cid: str

    @property
    def msg_id(self) -> str:
        return self.request.msg_id


_REQUESTS = (Apply, Execute, Push, Pull)


def aborted(msg_id: str) -> TaskAborted:
    """The error of a request aborted before it ran."""
    return TaskAborted(f"task {msg_id} was aborted before it ran")


Waiting = Queued | _Asked | _Resume | None


class Executor:
    """Runs queued requests one at a time and sends their results where they ask.

    Owns a port of its own (a second connection to the relay), so results leave without
    a hop through the engine actor; results finished while more work waits are batched.
    While the controller is away (`online` clear), results are held until `resume()`.
    A result for a client this engine cannot connect to (behind a NAT, say) goes through
    the relay or scheduler that sent the request, and so do later ones for that client.

    It also listens (`node`): the scheduler sends its requests there, and a client's
    blocking call asks its request there and gets the result as the answer, with no hop
    through the engine actor (nor, for the client, its I/O thread). Requests that come
    this way queue behind those the engine actor passed on, in the order they came. The
    success of a blocking load-balanced call goes to the connection its client's thread
    made to this executor (`answer`), and only a copy to the scheduler.
    """

    def __init__(
        self,
        session: Session,
        relay: str,
        kernel: Kernel,
        bulk_threshold: int = 0,
        db: str = "",
    ) -> None:
        self.kernel = kernel
        self._db = db
        # final results the task database has not confirmed (`TasksRecorded`): given to a
        # restarted controller (`Redeliver`), so a crash loses none a client may hold
        self._unrecorded: dict[str, TaskResult] = {}
        self._bulk_threshold = bulk_threshold
        self._relay = Address.parse(relay)
        self._queue: deque[Waiting] = deque()
        self._lock = threading.Lock()
        # its own session: its replay history is read by this thread only
        self._listener = Listener(Session(session.key), self._relay.node, "executor")
        self.node = self._listener.node
        self.online = threading.Event()
        self.online.set()
        self._held: list[tuple[Address, Message]] = []  # results (and request copies)
        self._resends: list[tuple[Address, Message]] = []  # for clients out of reach
        self._via: dict[str, Address] = {}  # msg_id -> where its result goes if not reached
        self._unreachable: set[str] = set()  # client nodes this engine cannot connect to
        # requests an abort named before they were read off the socket: answered already,
        # they are dropped when read (an asked one still gets its answer there)
        self._aborted: dict[str, None] = {}
        self._finished: dict[str, None] = {}  # recent msg_ids answered: an abort is too late
        self._returned: dict[str, None] = {}  # placed requests sent back to the scheduler
        self._session = session
        self._addresses: dict[str, Address] = {}
        self.running: str | None = None

    def submit(self, request: Queued | _Resume, *, first: bool = False) -> None:
        """Queue `request` (at the front with `first`)."""
        with self._lock:
            if first:
                self._queue.appendleft(request)
            else:
                self._queue.append(request)
        self._listener.wake()

    def take(
        self, msg_ids: tuple[str, ...], *, queued: bool = False
    ) -> tuple[list[Queued], list[str]]:
        """Remove queued requests (these msg_ids, and with `queued` every one queued now)
        and return them, and the msg_ids named that are neither queued, running nor
        finished: requests still unread on the socket (while a request runs), or never
        coming. The caller answers those as aborted now; they are dropped when read. The
        request running now is never taken, nor one that comes later unnamed."""
        with self._lock:
            keep: deque[Waiting] = deque()
            taken: list[Queued] = []
            for request in self._queue:
                if request is None or isinstance(request, _Resume):
                    keep.append(request)
                elif queued or request.msg_id in msg_ids:
                    taken.append(request.request if isinstance(request, _Asked) else request)
                else:
                    keep.append(request)
            self._queue = keep
            found = {r.msg_id for r in taken}
            unread = []
            for msg_id in dict.fromkeys(msg_ids):
                if msg_id in found or msg_id == self.running or msg_id in self._finished:
                    continue
                remember(self._aborted, msg_id, None, _VIA_LIMIT)
                unread.append(msg_id)
            for msg_id in [*found, *unread]:  # answered now, by the caller
                remember(self._finished, msg_id, None, _VIA_LIMIT)
        return taken, unread

    def recorded(self, msg_ids: tuple[str, ...]) -> None:
        """The task database holds these results: let them go. Any thread."""
        with self._lock:
            for msg_id in msg_ids:
                self._unrecorded.pop(msg_id, None)

    def answered(self, msg_ids: tuple[str, ...]) -> tuple[str, ...]:
        """Those of `msg_ids` this executor ran or that were aborted here (recently: the
        last `_VIA_LIMIT`). Any thread."""
        with self._lock:
            return tuple(m for m in msg_ids if m in self._finished)

    def reclaim(self, msg_id: str) -> bool:
        """Take back the request `msg_id` if another runs now (it would wait behind it):
        from the queue, or unread (it is dropped when read). False if this executor is
        idle (it runs it next) or runs or ran it already."""
        with self._lock:
            if self.running in (None, msg_id) or msg_id in self._finished:
                return False
            if msg_id in self._returned:  # sent back when read: it may come again, to run
                return False
            kept = [w for w in self._queue if getattr(w, "msg_id", None) != msg_id]
            if len(kept) == len(self._queue):
                remember(self._aborted, msg_id, None, _VIA_LIMIT)  # unread: drop it when read
            self._queue = deque(kept)
            return True

    def _reply_to(self, address: str) -> Address:
        if not address:
            return self._relay
        found = self._addresses.get(address)
        if found is None:
            found = self._addresses[address] = Address.parse(address)
        return found

    def _sends(
        self, result: TaskResult, request: Queued, port: Port
    ) -> list[tuple[Address, Message]]:
        """Where `result` goes: to its client if the engine answers it (`answers_client`),
        with a copy (without a large value) to the relay or scheduler; else only there."""
        via = self._reply_to(request.reply)
        if not result.direct:
            return [(via, result)]
        if request.client in self._unreachable:
            return [(via, replace(result, direct=False))]
        copy = self._copy(result)
        if not port.connected(request.client):  # in case the connection cannot be made
            remember(self._via, result.msg_id, via, _VIA_LIMIT)
        return [(self._reply_to(f"actor://{request.client}/client"), result), (via, copy)]

    def _copy(self, result: TaskResult) -> TaskResult:
        """The controller's copy of a result its client gets: without a large value."""
        value = result.value
        if value is not None and 0 < self._bulk_threshold <= value.nbytes:
            return replace(result, value=None, bulk=value.nbytes)
        return result

    def _undelivered(self, node: str, items: list[Item]) -> None:
        """Results that could not be sent. For the controller (gone away): held until it
        is back. For a client this engine cannot reach: through the controller instead."""
        for item in items:
            result = item.message
            if item.to != "client":
                self._held.append((Address(node, item.to), result))
                continue
            if not isinstance(result, TaskResult):
                continue
            if node not in self._unreachable:
                self._unreachable.add(node)
                logger.warning(
                    "cannot connect to the client at %s: its results go through the controller",
                    node,
                )
            via = self._via.pop(result.msg_id, self._relay)
            self._resends.append((via, replace(result, direct=False)))

    def _resend(self, port: Port) -> None:
        """Send the results of clients out of reach through the controller."""
        resends, self._resends = self._resends, []
        for to, result in resends:
            if self.online.is_set():
                port.post(to.node, to.name, result)
            else:
                self._held.append((to, result))
        if resends:
            port.flush()

    def resume(self) -> None:
        """The controller is back: send the results held while it was away."""
        self.online.set()
        self.submit(_Resume(), first=True)

    def stop(self) -> None:
        """Finish the request running now, then return from `run()`."""
        with self._lock:
            self._queue.appendleft(None)
        self._listener.wake()

    def run(self) -> None:
        """Serve requests until `stop()` (in the thread that is to run user code)."""
        port = Port(self._session, on_undelivered=self._undelivered)
        try:
            while True:
                request = self._next(port)
                if request is None:
                    return
                if isinstance(request, _Resume):
                    self._resumed(port)
                    continue
                asked = request if isinstance(request, _Asked) else None
                queued: Queued = request.request if isinstance(request, _Asked) else request
                result = self.kernel.run(queued)
                final = self._db and (not queued.reply or result.status == "ok")
                with self._lock:  # (a failed balanced task may run again elsewhere: not final)
                    self.running = None
                    remember(self._finished, queued.msg_id, None, _VIA_LIMIT)
                    if final:
                        remember(self._unrecorded, queued.msg_id, self._copy(result), _VIA_LIMIT)
                if asked is not None:
                    self._answer(asked, result)
                    relay = self._reply_to(queued.reply)  # the relay hears of it now:
                    sends: list[tuple[Address, Message]] = [
                        (relay, relay_copy(queued, self._bulk_threshold)),
                        (relay, self._copy(result)),
                    ]
                elif queued.answer and result.direct and self._answer_on(queued.answer, result):
                    sends = [(self._reply_to(queued.reply), self._copy(result))]
                else:
                    sends = self._sends(result, queued, port)
                for to, message in sends:
                    self._post(port, to, message)
        finally:
            port.close()
            self._listener.close()

    def _resumed(self, port: Port) -> None:
        """The controller is back: send what was held meanwhile, and give its task
        database the results it has not confirmed (it may have lost them)."""
        port.check_connections()  # results sent as it went away: held now
        held, self._held = self._held, []
        for to, message in held:
            port.post(to.node, to.name, message)
        with self._lock:
            unrecorded = tuple(self._unrecorded.values())
        if unrecorded:
            db = Address.parse(self._db)
            port.post(db.node, db.name, Redeliver(results=unrecorded))
        port.flush()

    def _post(self, port: Port, to: Address, message: Message) -> None:
        """Send `message` (with the next flush); one for the controller while it is away
        is held until it is back."""
        if to.name != "client" and not self.online.is_set():
            self._held.append((to, message))
        elif port.post(to.node, to.name, message) >= port.batch_limit:
            port.flush()

    def _next(self, port: Port) -> Waiting:
        """The next request. Results posted meanwhile leave together once none waits
        (also when an abort took the ones that did). While idle, read the requests asked
        on this executor's socket; and while results went to connections not yet made,
        look at them now and then (their owner reads them only here)."""
        if self._listener.readable():  # those that came while a request ran queue in turn
            self._read_asks(port)
        while True:
            with self._lock:
                if self._queue:
                    request = self._queue.popleft()
                    if request is not None and not isinstance(request, _Resume):
                        self.running = request.msg_id  # under the lock: `take` sees it
                    return request
            if port.queued:
                port.flush()
            self._resend(port)
            if self._listener.wait(_WATCH_EVERY if port.connecting else None):
                self._read_asks(port)
            if port.connecting:
                port.check_connections()
                self._resend(port)

    def _read_asks(self, port: Port) -> None:
        """Queue the requests sent or asked on this executor's socket (or answer that they
        were aborted, if an abort named them, or aborted all, before they were read)."""
        listener = self._listener
        more = True  # called when a message waits
        while more:
            incoming = listener.receive()
            more = listener.readable()
            if incoming is None:
                continue
            idents = tuple(incoming.idents)
            for item in incoming.items:
                if not isinstance(item.message, _REQUESTS):
                    logger.debug("executor %s: dropped a %s", self.node, type(item.message))
                    continue
                request = item.message
                waiting = request if item.cid is None else _Asked(request, idents, item.cid)
                with self._lock:
                    aborted = request.msg_id in self._aborted
                    if aborted:
                        del self._aborted[request.msg_id]
                    busy = bool(self._queue) or self.running is not None
                    bounce = not aborted and busy and isinstance(request, Apply) and request.placed
                    if bounce:
                        remember(self._returned, request.msg_id, None, _VIA_LIMIT)
                    elif not aborted:
                        self._queue.append(waiting)
                if aborted:
                    self._aborted_answer(waiting)
                elif bounce:  # its client thought this engine idle: the scheduler places it
                    engine = self.kernel.engine_info.get("engine_id", -1)
                    self._post(
                        port,
                        self._reply_to(request.reply),
                        Bounced(msg_id=request.msg_id, engine=engine),
                    )
                    port.flush()

    def _aborted_answer(self, waiting: Queued | _Asked) -> None:
        """An aborted request read at last: its client and controller were answered when
        it was aborted; one asked on this socket gets that answer here too."""
        if isinstance(waiting, _Asked):
            request = waiting.request
            engine = self.kernel.engine_info.get("engine_id", -1)
            error = aborted(request.msg_id)
            direct = answers_client(request, "aborted")
            result = not_run(
                request.msg_id, engine, "aborted", error, client=request.client, direct=direct
            )
            self._answer(waiting, result)

    def _answer_on(self, answer: tuple[str, str], result: TaskResult) -> bool:
        """Send `result` as the answer `answer` (identity, cid) names, on the connection the
        client's thread made to this executor; False if there is none (it goes the usual way)."""
        identity, cid = answer
        return self._reply((identity.encode(),), cid, result)

    def _answer(self, asked: _Asked, result: TaskResult) -> None:
        """Send `result` back on the socket `asked` came in on (if the asker is gone, the
        relay has the result's copy)."""
        self._reply(asked.idents, asked.cid, result)

    def _reply(self, idents: tuple[bytes, ...], cid: str, result: TaskResult) -> bool:
        """Send `result` as the answer to ask `cid`, to the connection `idents`."""
        if self._listener.send(idents, [Item("", cid, Reply(value=result))]):
            return True
        logger.debug("executor %s: no connection %r to answer %s on", self.node, idents, cid)
        return False
