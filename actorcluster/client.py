"""The Client: a connection to a cluster, the factory of views, and the task book-keeping."""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from actorcluster._blocking import BlockingCalls
from actorcluster._io import ClientIO, Connect, Send
from actorcluster._taskdb import TaskDatabase
from actorcluster.actors.messages import (
    Abort,
    AbortTasks,
    Clear,
    ClientConfig,
    HubStatus,
    Question,
    QueueStatus,
    Redeliver,
    Request,
    ShutdownEngine,
    StopController,
    SubmitTask,
    Task,
    TaskResult,
    TasksRecorded,
    relay_copy,
)
from actorcluster.asyncresult import AsyncResult, Metadata
from actorcluster.error import ActorClusterError, NoEnginesRegistered, UnknownTask
from actorcluster.profile import connection_file
from actorcluster.transport import (
    RemoteRef,
    Session,
    ThreadPort,
    actor_of,
    deserialize,
    load_connection_file,
)

__all__ = ["Client"]


Targets = int | Sequence[int] | slice | str | None
Q = TypeVar("Q", bound=Question)


class Client(TaskDatabase, BlockingCalls):
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
        self._idle: int | None = None  # the engine that last ran a blocking balanced call
        self._places = info.get("scheme", "") == "leastload"  # may a client place tasks
        self._bulk = int(info.get("bulk_threshold", 0))
        # the ports of threads that asked executors: answers a waiter left are read anyway
        self._asking: dict[int, weakref.ref[ThreadPort]] = {}
        # what this client holds that the task database has not confirmed (`TasksRecorded`):
        # its questions name them, so that their answers reflect them, and it gives them
        # to a restarted controller (`Redeliver`): its requests, and its results
        self._unconfirmed: dict[str, Request | SubmitTask] = {}
        self._unrecorded: dict[str, None] = {}
        self._recorded_early: set[str] = set()  # confirmed before they got here
        self._controls: set[str] = set()  # outstanding control requests (not recorded)
        self._lock = threading.Lock()
        self._closed = False
        self._io = ClientIO.start(
            self.session,
            info["hub"],
            self._engines,
            self._on_result,
            int(info.get("bulk_threshold", 0)),
            self._sweep,
            self._on_recorded,
            self._on_restart,
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
        future = self._known_future(msg_id)
        if future is None:
            raise UnknownTask(f"unknown msg_id {msg_id!r} (not submitted by this client)")
        return future

    def _known_future(self, msg_id: str) -> Future[Any] | None:
        """The future of `msg_id`: the pending one, or for a finished task one made again
        from its result (finished futures are let go: a long session would keep a lock,
        a condition and their callbacks per task for the garbage collector to scan)."""
        future = self._futures.get(msg_id)
        if future is not None or msg_id not in self.results:
            return future
        finished: Future[Any] = Future()
        md = self.metadata.get(msg_id)
        error = None if md is None else md.get("pyerr")
        if error is not None:
            finished.set_exception(error)
        else:
            finished.set_result(self.results[msg_id])
        return finished

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
        task = bool(inner) and isinstance(inner[0], Task)  # not control (abort, clear...)
        keep = task and bool(self._config.db)
        with self._lock:
            for request in inner:
                msg_id = request.msg_id
                self.metadata[msg_id] = Metadata.new(msg_id, now, request.engine)
                self._targets[msg_id] = request.engine
                self.outstanding.add(msg_id)
            if not task:
                self._controls.update(msg_ids)
            if keep:  # until the task database confirms it holds them
                for item in requests:
                    self._unconfirmed[_msg_id(item)] = (
                        item if isinstance(item, SubmitTask) else relay_copy(item, self._bulk)
                    )
            self.history.extend(msg_ids)
        ar = result(self, msg_ids, **options)
        balanced = bool(requests) and isinstance(requests[0], SubmitTask)
        if blocking and (self._submit_now(requests, ar) if balanced else self._send_now(inner, ar)):
            return ar
        self._io.tell(Send(self._config.task if balanced else self._config.mux, list(requests)))
        return ar

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
            if msg_id in self._controls:
                self._controls.discard(msg_id)  # control: no task record to wait for
            elif result.status == "unsent":
                self._unconfirmed.pop(msg_id, None)
            elif msg_id in self._recorded_early:
                self._recorded_early.discard(msg_id)
            elif msg_id in self._targets and self._config.db:  # its own, not from the database
                self._unrecorded[msg_id] = None
        error = result.error
        if error is None:
            try:
                value = None if result.value is None else deserialize(result.value)
            except Exception as e:  # noqa: BLE001 - a result that cannot be rebuilt is its error
                error = e
        if error is not None:
            md["pyerr"] = error
            self.results[msg_id] = error
            future.set_exception(error)
        else:
            self.results[msg_id] = value
            future.set_result(value)
        self._futures.pop(msg_id, None)  # finished: `_known_future` makes it again if asked

    def _on_recorded(self, recorded: TasksRecorded) -> None:
        """The task database confirmed it holds these requests and results (I/O thread)."""
        with self._lock:
            for msg_id in recorded.requests:
                self._unconfirmed.pop(msg_id, None)
            for msg_id in recorded.results:
                if msg_id in self._unrecorded:
                    del self._unrecorded[msg_id]
                elif msg_id in self.outstanding:  # the copy beat the result here
                    self._recorded_early.add(msg_id)

    def _on_restart(self) -> None:
        """The controller restarted: give its task database what it may have lost (I/O
        thread)."""
        with self._lock:
            requests = tuple(self._unconfirmed.values())
        if requests and self._config.db:
            self._io.tell(Send(self._config.db, [Redeliver(requests=requests)]))

    def _reflecting(self, question: Q) -> Q:
        """`question` naming what its answer must reflect: the msg_ids this client holds
        that the task database has not confirmed (requests, results), and those of them
        whose results it holds."""
        with self._lock:
            finished = tuple(self._unrecorded)
            known = (*self._unconfirmed, *finished)
        return replace(question, known=known, finished=finished)

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
        """Abort requests that have not started: `jobs` (AsyncResults or msg_ids); else
        every request queued on `targets` now, and this client's outstanding ones there
        (also load-balanced ones, when `targets` is None). A running request is never
        aborted, nor one sent after the abort."""
        if jobs is None:
            engines, single = self._resolve(targets)
            with self._lock:
                mine = [m for m in self.outstanding if m in self._targets]
            by_engine = {e: [m for m in mine if self._targets[m] == e] for e in engines}
            balanced = [m for m in mine if self._targets[m] == -1] if targets is None else []
            queued = True
        else:
            by_engine, balanced, single, queued = {}, [], False, False
            for msg_id in self._msg_ids(jobs):
                if msg_id not in self._targets:
                    raise UnknownTask(f"unknown msg_id {msg_id!r} (not submitted by this client)")
                engine = self._targets[msg_id]
                if engine == -1:
                    balanced.append(msg_id)  # the scheduler knows where (or whether) it runs
                else:
                    by_engine.setdefault(engine, []).append(msg_id)
        if balanced:
            # on the connection the tasks went by, so the abort cannot overtake them
            self._io.tell(Send(self._config.task, [AbortTasks(msg_ids=tuple(balanced))]))
        requests = [
            self._request(Abort, e, msg_ids=tuple(ids), queued=queued)
            for e, ids in by_engine.items()
            if e in self._engines
        ]
        ar = self._submit(requests, fname="abort", single=single)
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
        question = self._reflecting(QueueStatus(engines=engines, verbose=verbose))
        status: dict[Any, Any] = RemoteRef(self.info["hub"], self.session).ask(
            question, block=True, timeout=10
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


def _msg_id(item: Request | SubmitTask) -> str:
    return item.request.msg_id if isinstance(item, SubmitTask) else item.msg_id


def _date(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)
