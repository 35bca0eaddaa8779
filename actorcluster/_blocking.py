"""Blocking calls that spare the client's I/O thread: the request leaves from the calling
thread, and the result comes back as the answer on that thread's own socket.

A blocking direct call (`_send_now`) is asked of the engine's executor; a blocking
load-balanced call (`_submit_now`) goes to the scheduler from the calling thread, and the
executor that runs it answers on the connection the thread made to it (`_answered_here`);
or, when the engine that ran the last one is likely idle, straight to that engine, with a
copy to the scheduler (`_placed`): an engine busy after all sends it back to the scheduler.
An answer whose waiter left (an interrupt, a timeout) is still read: the I/O thread sweeps
the asking threads' ports (`_sweep`).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from actorcluster.actors.messages import Reclaim, Request, SubmitTask, TaskResult
from actorcluster.asyncresult import AsyncResult
from actorcluster.error import ActorClusterError
from actorcluster.transport import Address, ReplyFuture, ThreadPort, actor_of

__all__ = ["BlockingCalls"]

_ASK_FOREVER = 10 * 365 * 86400.0  # an asked request's result may take as long as it takes
_PLACE_MAX = 64 * 1024  # bytes of payload past which a task is not placed (it would travel twice)
_ELSEWHERE = ActorClusterError("the result came another way")  # ends a wait for an answer


class BlockingCalls:
    """`Client` methods for blocking calls made from the calling thread."""

    if TYPE_CHECKING:  # what Client provides
        _config: Any
        _io: Any
        _lock: threading.Lock
        _engines: dict[int, str]
        _idle: int | None
        _places: bool
        _asking: dict[int, weakref.ref[ThreadPort]]
        outstanding: set[str]
        session: Any

        def _on_result(self, result: TaskResult) -> None: ...

    def _send_now(self, requests: Sequence[Request], ar: AsyncResult) -> bool:
        """Send direct requests from the calling thread, sparing the hop to the I/O thread,
        when nothing else of this client is in flight: so no earlier request can still be
        on its way to those engines. Each engine must be connected to already.

        A request is asked of the engine's executor, whose answer is its result: `ar.get()`
        reads it on this thread's own socket (no hop through the engine actor nor the I/O
        thread). The relay gets a copy of the request from here at once (it fails the request
        if its engine dies) and copies of both from the executor (a second copy is dropped).
        """
        io = actor_of(self._io)
        with self._lock:
            if io is None or len(self.outstanding) != len(requests):
                return False
        nodes = [io.connected(r.engine) for r in requests]
        if None in nodes:
            return False
        port = ThreadPort.of_thread(self.session)
        self._asks_on(port)
        relay, relay_name = Address.parse(self._config.mux)
        for request, node in zip(requests, nodes, strict=True):
            direct = replace(request, direct=True)
            executor = io.executors.get(request.engine, "")
            if executor:
                asked = port.ask(executor, "executor", direct, _ASK_FOREVER)
                asked.add_done_callback(self._answered)
                ar.drive(asked)
            else:
                port.send_now(str(node), "engine", direct)
            # the relay's copy, after the request has left: it fails the request if its
            # engine dies (the executor's own copy, should it come too, is dropped there)
            port.send_now(relay, relay_name, io.copy(direct))
        return True

    def _submit_now(self, tasks: Sequence[Request | SubmitTask], ar: AsyncResult) -> bool:
        """Send load-balanced tasks to the scheduler from the calling thread, sparing the
        hop to the I/O thread, when nothing else of this client is in flight (as
        `_send_now`) and the I/O thread is connected to the scheduler. A single task is
        answered on this thread's own socket, as `_send_now`'s are (`_answered_here`)."""
        io = actor_of(self._io)
        node, name = Address.parse(self._config.task)
        with self._lock:
            if io is None or len(self.outstanding) != len(tasks):
                return False
        if not io.port.connected(node):
            return False
        port = ThreadPort.of_thread(self.session)
        if len(tasks) == 1 and isinstance(tasks[0], SubmitTask):
            single, unanswered = self._placed(
                self._answered_here(tasks[0], ar, io, port, node), io, port
            )
            if unanswered is not None:
                ar.on_unanswered(unanswered)
            tasks = [single]
        for task in tasks:
            port.send_now(node, name, task)
        return True

    def _answered_here(
        self, task: SubmitTask, ar: AsyncResult, io: Any, port: ThreadPort, scheduler: str
    ) -> SubmitTask:
        """Have the engine that runs `task` send its success to this thread's own
        connection to its executor, as the answer to an ask `ar.get()` reads: no hop
        through the I/O thread. Only once this thread is connected to every engine's
        executor (it connects now, for the next call); a failure, which the scheduler may
        run again, still comes through the I/O thread (and ends the wait)."""
        executors = []
        for engine in list(self._engines):
            node = io.nodes.get(engine)
            executor = io.executors.get(engine, "") if node else ""
            if not executor:
                return task
            executors.append(executor)
        unconnected = [e for e in executors if not port.connected(e)]
        if unconnected:
            port.check_connections()
            unconnected = [e for e in unconnected if not port.connected(e)]
        for executor in unconnected:
            port.dial(executor)
        if unconnected or not executors:
            return task
        self._asks_on(port)
        cid, answer = port.expect(scheduler, "a load-balanced task", _ASK_FOREVER)
        answer.add_done_callback(self._ran)
        ar.drive(answer)
        ar.add_done_callback(lambda _: port.cancel(cid, _ELSEWHERE))
        return replace(task, request=replace(task.request, answer=(port.identity.decode(), cid)))

    def _placed(
        self, task: SubmitTask, io: Any, port: ThreadPort
    ) -> tuple[SubmitTask, Callable[[], None] | None]:
        """Send `task`, to be answered here, straight to the executor of the engine that ran
        this client's last blocking balanced call (idle now, unless busy with others'
        tasks: the least loaded) and return the scheduler's copy; or return `task` as it
        is, for the scheduler to place: under another scheme than leastload, when it has
        graph dependencies, is not for that engine, is large (it would travel twice), or
        that engine is gone or not connected yet. With a placed task comes what to do if
        it is not answered in a moment: ask its engine to send it back to the scheduler if
        it is busy with another task (it reads its socket only between tasks)."""
        engine, request = self._idle, task.request
        if not self._places or engine is None or request.answer is None:
            return task, None
        if task.after or task.follow or engine not in self._engines:
            return task, None
        if task.targets is not None and engine not in task.targets:
            return task, None
        node = io.nodes.get(engine)
        executor = io.executors.get(engine, "") if node else ""
        if not executor or not port.connected(executor) or request.payload.nbytes > _PLACE_MAX:
            return task, None
        direct = Address.dialable(request.client)  # as the scheduler would send it
        placed = replace(
            request, engine=engine, reply=self._config.task, direct=direct, placed=True
        )
        port.send_now(executor, "executor", placed)

        def unanswered() -> None:
            port.send_now(str(node), "engine", Reclaim(msg_id=request.msg_id))

        return replace(task, placed=engine), unanswered

    def _ran(self, answer: ReplyFuture) -> None:
        """A blocking balanced call's success: its engine may take the next one directly."""
        try:
            result = answer.get(timeout=0)
        except Exception:  # noqa: BLE001 - it failed: the scheduler tells the client
            return
        self._idle = result.engine
        self._on_result(result)

    def _asks_on(self, port: ThreadPort) -> None:
        """`port` may get answers its thread stops waiting for: `_sweep` reads them."""
        if id(port) not in self._asking:
            with self._lock:
                self._asking[id(port)] = weakref.ref(port)

    def _sweep(self) -> None:
        """Read the sockets of asking threads that do not read them now (I/O thread), so
        that a result whose waiter was interrupted or timed out still completes."""
        with self._lock:
            refs = list(self._asking.items())
        for key, ref in refs:
            port = ref()
            if port is None:
                with self._lock:
                    self._asking.pop(key, None)
            else:
                port.sweep()

    def _answered(self, asked: ReplyFuture) -> None:
        """An executor's answer to an asked request: its result."""
        try:
            result = asked.get(timeout=0)
        except Exception:  # noqa: BLE001 - not answered (engine gone): the relay reports it
            return
        self._on_result(result)
