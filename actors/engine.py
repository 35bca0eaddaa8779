"""The engine: an actor that takes requests and control, an executor that runs user code.

The `Engine` actor never runs user code: it queues requests for its `Executor` (the main
thread of an engine process, or a thread of its own in-process) and serves control while
a request runs: `Abort` answers queued requests with `TaskAborted`, `Clear` resets the
namespace after the running request, `ShutdownEngine` stops the engine. Its `Heart`
answers pings from C, so it beats while user code holds the interpreter.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from actorcluster.actors.kernel import Kernel
from actorcluster.actors.messages import (
    Abort,
    Apply,
    Clear,
    EngineConfig,
    Execute,
    Hello,
    Pull,
    Push,
    Queued,
    RegisterEngine,
    ShutdownEngine,
    TaskResult,
)
from actorcluster.transport import (
    Address,
    Heart,
    Port,
    ReplyFuture,
    Session,
    SocketActor,
    Terminated,
)

from actorcluster.error import TaskAborted

__all__ = ["Engine", "Executor"]

logger = logging.getLogger(__name__)


class Executor:
    """Runs queued requests one at a time and sends their results where they ask.

    Owns a port of its own (a second connection to the relay), so results leave without
    a hop through the engine actor; results finished while more work waits are batched.
    """

    def __init__(self, session: Session, relay: str, kernel: Kernel) -> None:
        self.kernel = kernel
        self._relay = Address.parse(relay)
        self._queue: deque[Queued | None] = deque()
        self._cond = threading.Condition()
        self._session = session
        self._addresses: dict[str, Address] = {}
        self.running: str | None = None

    def submit(self, request: Queued, *, first: bool = False) -> None:
        """Queue `request` (at the front with `first`)."""
        with self._cond:
            if first:
                self._queue.appendleft(request)
            else:
                self._queue.append(request)
            self._cond.notify()

    def take(self, msg_ids: tuple[str, ...]) -> list[Queued]:
        """Remove queued requests (these msg_ids, or all when empty) and return them."""
        with self._cond:
            keep: deque[Queued | None] = deque()
            taken: list[Queued] = []
            for request in self._queue:
                if request is not None and (not msg_ids or request.msg_id in msg_ids):
                    taken.append(request)
                else:
                    keep.append(request)
            self._queue = keep
        return taken

    def _reply_to(self, address: str) -> Address:
        if not address:
            return self._relay
        found = self._addresses.get(address)
        if found is None:
            found = self._addresses[address] = Address.parse(address)
        return found

    def stop(self) -> None:
        """Finish the request running now, then return from `run()`."""
        with self._cond:
            self._queue.appendleft(None)
            self._cond.notify()

    def run(self) -> None:
        """Serve requests until `stop()` (in the thread that is to run user code)."""
        port = Port(self._session)
        try:
            while True:
                with self._cond:
                    while not self._queue:
                        self._cond.wait()
                    request = self._queue.popleft()
                    more = bool(self._queue)
                if request is None:
                    return
                self.running = request.msg_id
                result = self.kernel.run(request)
                self.running = None
                to = self._reply_to(request.reply)
                queued = port.post(to.node, to.name, result)
                if not more or queued >= port.batch_limit:
                    port.flush()
        finally:
            port.close()


class Engine(SocketActor):
    """Registers with the Hub, queues requests for its executor, serves control.

    Accepts: `Apply`, `Execute`, `Push`, `Pull`, `Clear` (queued), `Abort`,
    `ShutdownEngine` (served at once). Emits: `Hello`, `RegisterEngine`, `TaskResult`
    (for control; results of requests come from the executor). Owns: a DEALER to the
    relay and one to the Hub (through its port), and its heart's sockets.

    Args:
        session: the cluster's session.
        info: the engine connection info (`hub`, `relay`, `ping`, `pong` addresses).
        executor_thread: run the executor in a thread of its own (in-process engines);
            otherwise the caller runs `executor.run()` (the main thread of a process).
        watch_hub: stop when the Hub goes away (engines in their own processes).
        on_exit: called once the engine has stopped for good.
    """

    def __init__(
        self,
        session: Session,
        info: dict[str, Any],
        *,
        executor_thread: bool = False,
        watch_hub: bool = False,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.uuid = uuid.uuid4().hex
        super().__init__(session, name="engine", origin=f"engine-{self.uuid}")
        self.info = info
        self.id = -1
        self.registered = threading.Event()
        self.kernel = Kernel(
            {"engine_uuid": self.uuid, "hostname": socket.gethostname(), "pid": os.getpid()}
        )
        self.executor = Executor(session, info["relay"], self.kernel)
        self.heart = Heart(info["ping"], info["pong"], self.uuid)
        self._executor_thread = executor_thread
        self._watch_hub = watch_hub
        self._on_exit = on_exit

    def on_start(self) -> None:
        if self._executor_thread:
            threading.Thread(
                target=self.executor.run, name=f"engine-{self.uuid[:8]}", daemon=True
            ).start()
        self.heart.start()
        self._greet([self.info["relay"], self.info["scheduler"]])

    def _greet(self, addresses: list[str]) -> None:
        """Say hello to each controller actor in turn (so they have a route), then register."""
        if not addresses:
            self._register()
            return
        node, name = Address.parse(addresses[0])

        def next_one(hello: ReplyFuture) -> None:
            if self._check(hello, addresses[0]):
                self._greet(addresses[1:])

        self.port.ask(node, name, Hello(uuid=self.uuid), timeout=30).add_done_callback(next_one)

    def _register(self) -> None:
        hub = Address.parse(self.info["hub"])
        request = RegisterEngine(
            uuid=self.uuid, node=str(self.node), pid=os.getpid(), hostname=socket.gethostname()
        )
        self.port.ask(hub.node, hub.name, request, timeout=30).add_done_callback(self._registered)

    def _registered(self, reply: ReplyFuture) -> None:
        if not self._check(reply, "the hub"):
            return
        config: EngineConfig = reply.get(timeout=0)
        self.id = config.id
        self.kernel.engine_info["engine_id"] = config.id
        self.registered.set()
        logger.info("engine %d registered (uuid %s)", self.id, self.uuid)
        if self._watch_hub:
            self.watch(self.info["hub"])  # a controller that goes away takes its engines along

    def _check(self, reply: ReplyFuture, whom: str) -> bool:
        try:
            reply.get(timeout=0)
        except Exception as e:  # noqa: BLE001 - whatever failed, registration failed
            logger.error("engine %s could not register with %s: %s", self.uuid, whom, e)
            self.stop()
            return False
        return True

    def on_receive(self, message: Any) -> Any:
        match message:
            case Apply() | Execute() | Push() | Pull():
                self.executor.submit(message)
            case Clear():
                self.executor.submit(message, first=True)
            case Abort(msg_ids=msg_ids):
                for request in self.executor.take(msg_ids):
                    self._answer(
                        request.msg_id,
                        "aborted",
                        TaskAborted(f"task {request.msg_id} was aborted before it ran"),
                        request.reply,
                    )
                self._answer(message.msg_id, "ok", reply=message.reply)
            case Terminated(address=address, reason=reason):
                logger.warning(
                    "engine %d: the controller at %s went away (%s); stopping",
                    self.id,
                    address,
                    reason,
                )
                self.stop()
            case ShutdownEngine():
                for request in self.executor.take(()):
                    self._answer(
                        request.msg_id,
                        "aborted",
                        TaskAborted(f"task {request.msg_id}: engine {self.id} shut down"),
                    )
                self._answer(message.msg_id, "ok")
                self.stop()
        return None

    def _answer(
        self, msg_id: str, status: str, error: BaseException | None = None, reply: str = ""
    ) -> None:
        now = time.time()
        result = TaskResult(
            msg_id=msg_id,
            engine=self.id,
            status=status,
            error=error,
            metadata={"started": now, "completed": now, "engine_uuid": self.uuid},
        )
        self.send(reply or self.info["relay"], result)

    def _after_stop(self) -> None:
        try:
            super()._after_stop()
        finally:
            self.executor.stop()
            self.heart.stop()
            if self._on_exit is not None:
                self._on_exit()
