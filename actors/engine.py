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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from actorcluster.actors.executor import Executor, aborted
from actorcluster.actors.kernel import Kernel
from actorcluster.actors.messages import (
    Abort,
    Answered,
    Apply,
    Bounced,
    Clear,
    EngineConfig,
    Execute,
    Hello,
    Pull,
    Push,
    Reclaim,
    RegisterEngine,
    Request,
    ShutdownEngine,
    TaskResult,
    TasksRecorded,
    answers_client,
    not_run,
)
from actorcluster.transport import (
    Address,
    Heart,
    ReplyFuture,
    Session,
    SocketActor,
    Terminated,
    listen_toward,
)

from actorcluster.error import TaskAborted

__all__ = ["Engine"]

logger = logging.getLogger(__name__)

_RETRY_EVERY = 0.5  # seconds between attempts to register with a restarted controller


@dataclass(frozen=True)
class _Reconnect:
    """Try again to register with the controller."""


class Engine(SocketActor):
    """Registers with the Hub, queues requests for its executor, serves control.

    Accepts: `Apply`, `Execute`, `Push`, `Pull`, `Clear` (queued), `Abort`, `Reclaim`,
    `ShutdownEngine`, `Answered`, `TasksRecorded` (served at once). Emits: `Hello`,
    `RegisterEngine`, `TaskResult` (for control; results of requests come from the
    executor), `Bounced` (a reclaimed task, to the scheduler). Owns: a DEALER to the relay and one to the Hub (through its
    port), and its heart's sockets.

    Args:
        session: the cluster's session.
        info: the engine connection info (`hub`, `relay`, `ping`, `pong` addresses).
        executor_thread: run the executor in a thread of its own (in-process engines);
            otherwise the caller runs `executor.run()` (the main thread of a process).
        watch_hub: notice when the Hub goes away (engines in their own processes).
        reconnect_for: then wait this many seconds for a controller restarted on the same
            ports (`actorclusterd --reuse`) and register with it again, keeping the
            namespace, the engine id and the results finished meanwhile; 0: stop at once.
        on_exit: called once the engine has stopped for good.
    """

    def __init__(
        self,
        session: Session,
        info: dict[str, Any],
        *,
        executor_thread: bool = False,
        watch_hub: bool = False,
        reconnect_for: float = 0.0,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.uuid = uuid.uuid4().hex
        listen, advertise = listen_toward(Address.parse(info["relay"]).node)
        super().__init__(session, name="engine", listen=listen, advertise=advertise)
        self.info = info
        self.id = -1
        self.registered = threading.Event()
        self.kernel = Kernel(
            {"engine_uuid": self.uuid, "hostname": socket.gethostname(), "pid": os.getpid()}
        )
        self.executor = Executor(
            session,
            info["relay"],
            self.kernel,
            bulk_threshold=int(info.get("bulk_threshold", 0)),
            db=str(info.get("db", "")),
        )
        self.heart = Heart(info["ping"], info["pong"], self.uuid)
        self._executor_thread = executor_thread
        self._watch_hub = watch_hub
        self._reconnect_for = reconnect_for
        self._reconnect_until: float | None = None
        self._on_exit = on_exit

    def on_start(self) -> None:
        if self._executor_thread:
            threading.Thread(
                target=self.executor.run, name=f"engine-{self.uuid[:8]}", daemon=True
            ).start()
        self.heart.start()
        self._greet()

    def _greet(self, addresses: list[str] | None = None) -> None:
        """Say hello to each controller actor in turn (so they have a route), then register."""
        if addresses is None:
            addresses = [self.info["relay"], self.info["scheduler"]]
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
            uuid=self.uuid,
            node=str(self.node),
            pid=os.getpid(),
            hostname=socket.gethostname(),
            id=self.id,
            executor=self.executor.node,
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
        if self._reconnect_until is not None:
            self._reconnect_until = None
            self.executor.resume()
        if self._watch_hub:
            self.watch(self.info["hub"])  # a controller that goes away takes its engines along

    def _check(self, reply: ReplyFuture, whom: str) -> bool:
        try:
            reply.get(timeout=0)
        except Exception as e:  # noqa: BLE001 - whatever failed, registration failed
            if self._reconnect_until is not None and time.monotonic() < self._reconnect_until:
                self.call_later(_RETRY_EVERY, _Reconnect())
                return False
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
            case Abort(msg_ids=msg_ids, queued=queued, reply=reply):
                taken, unread = self.executor.take(msg_ids, queued=queued)
                for request in taken:
                    self._answer(request, "aborted", aborted(request.msg_id))
                for msg_id in unread:  # its relay or scheduler knows its client
                    result = self._outcome(msg_id, "aborted", aborted(msg_id))
                    self.send(reply or self.info["relay"], result)
                self._answer(message, "ok")
            case Reclaim(msg_id=msg_id):
                if self.executor.reclaim(msg_id):
                    self.send(self.info["scheduler"], Bounced(msg_id=msg_id, engine=self.id))
            case Answered(msg_ids=msg_ids):
                return self.executor.answered(msg_ids)
            case TasksRecorded(results=results):
                self.executor.recorded(results)
            case Terminated(address=address, reason=reason):
                self._controller_lost(address, reason)
            case _Reconnect():
                self._greet()
            case ShutdownEngine():
                for request in self.executor.take((), queued=True)[0]:
                    self._answer(
                        request,
                        "aborted",
                        TaskAborted(f"task {request.msg_id}: engine {self.id} shut down"),
                    )
                # through the relay, on a connection made long ago: this process may end
                # before a new one to the client is up (and the relay answers it anyway
                # should the engine be gone first)
                self._answer(replace(message, direct=False), "ok")
                self.stop()
        return None

    def _controller_lost(self, address: str, reason: str) -> None:
        if self._reconnect_for <= 0:
            logger.warning(
                "engine %d: the controller at %s went away (%s); stopping", self.id, address, reason
            )
            self.stop()
            return
        logger.warning(
            "engine %d: the controller at %s went away (%s); waiting up to %.0f s for it",
            self.id,
            address,
            reason,
            self._reconnect_for,
        )
        self.executor.online.clear()
        self._reconnect_until = time.monotonic() + self._reconnect_for
        self._greet()

    def _answer(self, request: Request, status: str, error: BaseException | None = None) -> None:
        """Answer a request that does not run (control, aborted): like a result would."""
        direct = answers_client(request, status)
        result = self._outcome(request.msg_id, status, error, request.client, direct)
        if result.direct:
            self.send(f"actor://{request.client}/client", result)
        self.send(request.reply or self.info["relay"], result)

    def _outcome(
        self,
        msg_id: str,
        status: str,
        error: BaseException | None,
        client: str = "",
        direct: bool = False,
    ) -> TaskResult:
        """The result of a request that did not run here."""
        return not_run(
            msg_id, self.id, status, error, client=client, direct=direct, engine_uuid=self.uuid
        )

    def _after_stop(self) -> None:
        try:
            super()._after_stop()
        finally:
            self.executor.stop()
            self.heart.stop()
            if self._on_exit is not None:
                self._on_exit()
