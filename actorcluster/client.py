"""The Client: a connection to a cluster, the factory of views, and the task book-keeping."""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actorcluster._io import ClientIO, Connect, Send
from actorcluster._taskdb import TaskDatabase
from actorcluster.actors.messages import (
    Abort,
    AbortTasks,
    Clear,
    ClientConfig,
    ExecutorAt,
    HubStatus,
    QueueStatus,
    Request,
    ShutdownEngine,
    StopController,
    SubmitTask,
    TaskResult,
)
from actorcluster.asyncresult import AsyncResult, Metadata
from actorcluster.error import ActorClusterError, NoEnginesRegistered, UnknownTask
from actorcluster.profile import connection_file
from actorcluster.transport import (
    Address,
    RemoteRef,
    ReplyFuture,
    Session,
    ThreadPort,
    actor_of,
    deserialize,
    load_connection_file,
)

__all__ = ["Client"]

logger = logging.getLogger(__name__)

_ASK_FOREVER = 10 * 365 * 86400.0  # an asked request's result may take as long as it takes
_ELSEWHERE = ActorClusterError("the result came another way")  # ends a wait for an answer


def _nothing() -> None:
    pass


Targets = int | Sequence[int] | slice | str | None


class Client(TaskDatabase):
    """A connection to a cluster (the spec's `Client`).

    Its task-database methods (`db_query`, `get_result`, `result_status`, `hub_history`,
    `purge_*`, `resubmit`) come from `TaskDatabase`.

    Args:
        url_file_or_connection_file: the client connection file to use; by default the
            one of `profile` and `cluster_id`.
        profile: the profile whose connection file to use ("default").
        cluster_id: the cluster id within the profile.
        timeout: seconds to wait for the controller to answer.
        info: the connection info itself, instead of a file.
        block: the default of views made by this client.

    Raises:
        ConnectionFileError: the connection file is missing or unsafe.
        TimeoutError: the controller did not answer within `timeout` (down, or a wrong key).
    """

    def __init__(
        self,
        url_file_or_connection_file: str | os.PathLike[str] | None = None,
        profile: str | None = None,
        cluster_id: str | None = None,
        timeout: float = 10,
        *,
        info: dict[str, Any] | None = None,
        block: bool = False,
    ) -> None:
        self.connection_file: Path | None = None
        if info is None:
            path = Path(url_file_or_connection_file or connection_file(profile, cluster_id))
            info = load_connection_file(path)
            self.connection_file = path
        self.info = info
        self.block = block
        self.session = Session(str(info["key"]).encode())
        self.metadata: dict[str, Metadata] = {}
        self.results: dict[str, Any] = {}
        self.history: list[str] = []
        self.outstanding: set[str] = set()
        self._futures: dict[str, Future[Any]] = {}
        self._targets: dict[str, int] = {}
        self._engines: dict[int, str] = {}
        self._executors: dict[str, str] = {}  # engine uuid -> where its executor listens
        # the ports of threads that asked executors: answers a waiter left are read anyway
        self._asking: dict[int, weakref.ref[ThreadPort]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._io = ClientIO.start(
            self.session,
            info["hub"],
            self._engines,
            self._on_result,
            int(info.get("bulk_threshold", 0)),
            self._sweep,
        )
        self._node: str = actor_of(self._io).node  # where results and notices reach us
        connect = Connect(info["hub"], info["notification"], timeout)
        try:
            reply = self._io.ask(connect, timeout=timeout)
            self._config: ClientConfig = reply.get(timeout=timeout)
        except Exception as e:  # noqa: BLE001 - any failure to connect is reported as one
            self.close()
            raise TimeoutError(
                f"could not connect to the controller at {info['hub']} within {timeout} s "
                f"({e}); is the cluster running, and is the key in "
                f"{self.connection_file or 'the connection info'} the cluster's?"
            ) from None

    # -- engines and views ----------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """The ids of the registered engines, kept current by notifications."""
        return sorted(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def __getitem__(self, key: int | slice | Sequence[int]) -> Any:
        """`rc[0]`, `rc[::2]`, `rc[[0, 2]]`: a DirectView on those engines."""
        if not isinstance(key, int | slice | list | tuple):
            raise TypeError(f"index a Client with an int, a slice or a list of ints, not {key!r}")
        return self.direct_view(key)

    def direct_view(self, targets: Targets = "all") -> Any:
        """A DirectView on `targets` ("all" is re-evaluated at each call)."""
        from actorcluster.view import DirectView

        return DirectView(self, targets)

    def load_balanced_view(self, targets: Targets = None) -> Any:
        """A LoadBalancedView: the scheduler picks an engine (among `targets`) per task."""
        from actorcluster.loadbalanced import LoadBalancedView

        return LoadBalancedView(self, targets)

    def _resolve(self, targets: Targets) -> tuple[list[int], bool]:
        """Turn `targets` into engine ids now; also whether it names a single engine."""
        ids = self.ids
        if targets is None or targets == "all":
            if not ids:
                raise NoEnginesRegistered("no engine is registered; start some, or wait for them")
            return ids, False
        if isinstance(targets, int):
            if targets < 0:
                targets = ids[targets] if -len(ids) <= targets else targets
            if targets not in self._engines:
                raise IndexError(f"engine {targets} is not registered (registered: {ids})")
            return [targets], True
        if isinstance(targets, slice):
            chosen = ids[targets]
            if not chosen:
                raise NoEnginesRegistered(f"no engine in {targets} of registered {ids}")
            return chosen, False
        chosen = list(targets)  # type: ignore[arg-type]
        unknown = [t for t in chosen if t not in self._engines]
        if unknown:
            raise IndexError(f"engines {unknown} are not registered (registered: {ids})")
        return chosen, False

    def wait_for_engines(self, n: int, timeout: float = 30) -> None:
        """Wait until at least `n` engines are registered.

        Raises:
            TimeoutError: fewer than `n` engines after `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while len(self._engines) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(self._engines)} of {n} engines registered within {timeout} s"
                )
            pause.wait(0.01)  # registrations arrive on the I/O thread

    # -- sending ----------------------------------------------------------------------------
    def _task_future(self, msg_id: str) -> Future[Any]:
        future = self._futures.get(msg_id)
        if future is None:
            raise UnknownTask(f"unknown msg_id {msg_id!r} (not submitted by this client)")
        return future

    def _submit(
        self,
        requests: Sequence[Request | SubmitTask],
        result: type[AsyncResult] = AsyncResult,
        *,
        blocking: bool = False,
        **options: Any,
    ) -> Any:
        """Book-keep and send requests (to the relay) or tasks (to the scheduler).

        `blocking`: the caller waits for the result next, so direct requests may leave
        from its thread at once (see `_send_now`).

        Returns:
            Their `result` (an AsyncResult class), made before anything is sent.
        """
        if self._closed:
            raise ActorClusterError("this client is closed")
        now = datetime.now(UTC)
        inner = [r.request if isinstance(r, SubmitTask) else r for r in requests]
        msg_ids = [r.msg_id for r in inner]
        with self._lock:
            for request in inner:
                msg_id = request.msg_id
                self.metadata[msg_id] = Metadata.new(msg_id, now, request.engine)
                self._targets[msg_id] = request.engine
                self.outstanding.add(msg_id)
            self.history.extend(msg_ids)
        ar = result(self, msg_ids, **options)
        balanced = bool(requests) and isinstance(requests[0], SubmitTask)
        if blocking and (self._submit_now(requests, ar) if balanced else self._send_now(inner, ar)):
            return ar
        self._io.tell(Send(self._config.task if balanced else self._config.mux, list(requests)))
        return ar

    def _send_now(self, requests: Sequence[Request], ar: AsyncResult) -> bool:
        """Send direct requests from the calling thread, sparing the hop to the I/O thread,
        when nothing else of this client is in flight: so no earlier request can still be
        on its way to those engines. Each engine must be connected to already.

        A request is asked of the engine's executor, whose answer is its result: `ar.get()`
        reads it on this thread's own socket (no hop through the engine actor nor the I/O
        thread). The executor gives the relay copies of the request and its result; only a
        request not answered within a moment gets its copy from here at once, so that the
        relay knows of it (and fails it if its engine dies).
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
        copies: list[Request] = []

        def unanswered() -> None:
            for copy in copies:
                port.send_now(relay, relay_name, copy)

        for request, node in zip(requests, nodes, strict=True):
            direct = replace(request, direct=True)
            executor = self._executor_of(request.engine, str(node), port)
            if executor:
                asked = port.ask(executor, "executor", direct, _ASK_FOREVER)
                asked.add_done_callback(self._answered)
                ar.drive(asked, unanswered)
                copies.append(io.copy(direct))
            else:
                port.send_now(str(node), "engine", direct)
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
            tasks = [self._answered_here(tasks[0], ar, io, port, node)]
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
            executor = self._executor_of(engine, node, port) if node else ""
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
        answer.add_done_callback(self._answered)
        ar.drive(answer, _nothing)
        ar.add_done_callback(lambda _: port.cancel(cid, _ELSEWHERE))
        return replace(task, request=replace(task.request, answer=(port.identity.decode(), cid)))

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

    def _executor_of(self, engine: int, node: str, port: ThreadPort) -> str:
        """Where engine `engine` (at `node`) runs requests asked of it ("" if unknown)."""
        uuid = self._engines.get(engine, "")
        found = self._executors.get(uuid)
        if found is None:
            try:
                found = str(port.ask(node, "engine", ExecutorAt(), 5.0).get(timeout=5.0))
            except Exception as e:  # noqa: BLE001 - then requests go to the engine actor
                logger.debug("engine %d does not say where its executor is: %s", engine, e)
                found = ""
            self._executors[uuid] = found
        return found

    def _answered(self, asked: ReplyFuture) -> None:
        """An executor's answer to an asked request: its result."""
        try:
            result = asked.get(timeout=0)
        except Exception:  # noqa: BLE001 - not answered (engine gone): the relay reports it
            return
        self._on_result(result)

    def _request(self, make: Any, engine: int, **fields: Any) -> Any:
        """A new request of class `make` from this client for `engine`."""
        return make(
            msg_id=self.session.new_msg_id(),
            client=self._io_node,
            engine=engine,
            submitted=time.time(),
            **fields,
        )

    def _on_result(self, result: TaskResult) -> None:
        """Complete the future of `result` (in the I/O thread, or the thread an executor
        answered; should both have it at once, the second finds the future done)."""
        try:
            self._complete(result)
        except InvalidStateError:
            pass  # completed by the other thread meanwhile

    def _complete(self, result: TaskResult) -> None:
        msg_id = result.msg_id
        future = self._futures.get(msg_id)
        if future is None or future.done():  # a copy of a result that came straight here
            return
        md = self.metadata[msg_id]
        meta = result.metadata
        dict.update(  # known keys: skip Metadata's check on this hot path
            md,
            received=datetime.now(UTC),
            started=_date(meta.get("started")),
            completed=_date(meta.get("completed")),
            engine_id=result.engine,
            engine_uuid=meta.get("engine_uuid"),
            status=result.status,
            stdout=meta.get("stdout", ""),
            stderr=meta.get("stderr", ""),
        )
        with self._lock:
            self.outstanding.discard(msg_id)
        if result.error is not None:
            md["pyerr"] = result.error
            self.results[msg_id] = result.error
            future.set_exception(result.error)
            return
        try:
            value = None if result.value is None else deserialize(result.value)
        except Exception as e:  # noqa: BLE001 - a result that cannot be rebuilt is its error
            self.results[msg_id] = e
            future.set_exception(e)
            return
        self.results[msg_id] = value
        future.set_result(value)

    # -- waiting ----------------------------------------------------------------------------
    def wait(self, jobs: Any = None, timeout: float | None = -1) -> bool:
        """Wait for `jobs` (AsyncResults, msg_ids; all outstanding when None).

        Returns:
            True if all finished within `timeout` (negative: no limit), else False.
        """
        futures = [self._task_future(m) for m in self._msg_ids(jobs)]
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        for future in futures:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.exception(remaining)
            except TimeoutError:
                return False
        return True

    def spin(self) -> None:
        """Nothing to do: results arrive on a background thread."""

    def _msg_ids(self, jobs: Any) -> list[str]:
        if jobs is None:
            with self._lock:
                return list(self.outstanding)
        if isinstance(jobs, str | AsyncResult):
            jobs = [jobs]
        ids: list[str] = []
        for job in jobs:
            ids.extend(job.msg_ids if isinstance(job, AsyncResult) else [job])
        return ids

    # -- control ----------------------------------------------------------------------------
    def _control(self, make: Any, targets: Targets, block: bool | None) -> Any:
        engines, single = self._resolve(targets)
        requests = [self._request(make, e) for e in engines]
        ar = self._submit(requests, fname=make.__name__, single=single)
        return ar.get() if (self.block if block is None else block) else ar

    @property
    def _io_node(self) -> str:
        return self._node

    def clear(self, targets: Targets = None, block: bool | None = None) -> Any:
        """Reset the namespace of `targets` (all engines by default)."""
        return self._control(Clear, targets, block)

    def abort(self, jobs: Any = None, targets: Targets = None, block: bool | None = None) -> Any:
        """Abort queued requests: `jobs` (AsyncResults or msg_ids), else all on `targets`."""
        if jobs is None:
            return self._control(lambda **kw: Abort(msg_ids=(), **kw), targets, block)
        by_engine: dict[int, list[str]] = {}
        balanced: list[str] = []
        for msg_id in self._msg_ids(jobs):
            if msg_id not in self._targets:
                raise UnknownTask(f"unknown msg_id {msg_id!r} (not submitted by this client)")
            if self._targets[msg_id] == -1:
                balanced.append(msg_id)  # the scheduler knows where (or whether) it runs
            else:
                by_engine.setdefault(self._targets[msg_id], []).append(msg_id)
        if balanced:
            # on the connection the tasks went by, so the abort cannot overtake them
            self._io.tell(Send(self._config.task, [AbortTasks(msg_ids=tuple(balanced))]))
        requests = [
            self._request(Abort, e, msg_ids=tuple(ids))
            for e, ids in by_engine.items()
            if e in self._engines
        ]
        ar = self._submit(requests, fname="abort")
        return ar.get() if (self.block if block is None else block) else ar

    def shutdown(
        self, targets: Targets = "all", hub: bool = False, block: bool | None = None
    ) -> Any:
        """Stop `targets`; with `hub=True` stop the whole cluster, controller included."""
        if hub:
            RemoteRef(self.info["hub"], self.session).ask(StopController(), block=True, timeout=10)
            return None
        return self._control(ShutdownEngine, targets, block)

    def queue_status(self, targets: Targets = None, verbose: bool = False) -> dict[Any, Any]:
        """Per-engine `queue` (direct), `tasks` (load-balanced) and `completed` counts, plus
        `unassigned`; with `verbose`, the msg_ids instead of the counts."""
        engines = None if targets is None else tuple(self._resolve(targets)[0])
        status: dict[Any, Any] = RemoteRef(self.info["hub"], self.session).ask(
            QueueStatus(engines=engines, verbose=verbose), block=True, timeout=10
        )
        if verbose and self._config.db:  # the msg_ids of completed tasks are the database's
            uuids = {self._engines[e]: e for e in status if e in self._engines}
            for counts in (status[e] for e in uuids.values()):
                counts["completed"] = []
            query = {"engine_uuid": {"$in": list(uuids)}, "completed": {"$ne": None}}
            for record in self.db_query(query, ["engine_uuid"]):
                status[uuids[record["engine_uuid"]]]["completed"].append(record["msg_id"])
        if isinstance(targets, int):
            return dict(status.get(targets, {}))
        return status

    def hub_status(self) -> dict[str, Any]:
        """The Hub's engines, queues and uptime."""
        result: dict[str, Any] = RemoteRef(self.info["hub"], self.session).ask(
            HubStatus(), block=True, timeout=10
        )
        return result

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection (outstanding futures stay as they are)."""
        if self._closed:
            return
        self._closed = True
        ThreadPort.discard(self.session)  # this thread's sockets (other threads': at their end)
        if self._io.is_alive():
            self._io.stop(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client: {len(self._engines)} engines, hub {self.info.get('hub')}>"


def _date(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
