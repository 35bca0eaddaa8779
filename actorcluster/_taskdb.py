"""The client's side of the task database: queries, results of any client, purges,
resubmission. Mixed into `Client`."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from actorcluster._io import Ask
from actorcluster.actors.messages import (
    DbQuery,
    Fetched,
    FetchResults,
    HubHistory,
    Purged,
    PurgeRecords,
    Question,
    Request,
    Resubmission,
    Resubmit,
    SubmitTask,
    TaskResult,
)
from actorcluster.actors.query import compile_query
from actorcluster.asyncresult import AsyncHubResult, AsyncResult, Metadata
from actorcluster.error import ActorClusterError, UnknownTask
from actorcluster.transport import deserialize

if TYPE_CHECKING:
    from actorcluster.actors.messages import ClientConfig

__all__ = ["TaskDatabase"]

Jobs = str | int | AsyncResult | Sequence[str | int | AsyncResult] | None


def _named(msg_ids: Sequence[str]) -> str:
    shown = ", ".join(repr(m) for m in msg_ids[:5])
    return shown + (f" and {len(msg_ids) - 5} more" if len(msg_ids) > 5 else "")


def _unknown(msg_ids: Sequence[str]) -> UnknownTask:
    return UnknownTask(f"unknown msg_id {_named(msg_ids)} (not in the task database)")


def _pending(msg_ids: Sequence[str]) -> ActorClusterError:
    return ActorClusterError(
        f"cannot purge pending tasks {_named(msg_ids)}: wait for them or abort them first"
    )


class TaskDatabase:
    """`Client` methods that use the controller's task database."""

    if TYPE_CHECKING:  # what Client provides
        _config: ClientConfig
        _io: Any
        _lock: threading.Lock
        _futures: dict[str, Future[Any]]
        _engines: dict[int, str]
        metadata: dict[str, Metadata]
        results: dict[str, Any]
        history: list[str]
        outstanding: set[str]
        _unrecorded: dict[str, None]
        block: bool
        session: Any

        @property
        def _io_node(self) -> str: ...

        def _on_result(self, result: TaskResult) -> None: ...

        def _submit(
            self, requests: Sequence[Request | SubmitTask], result: Any = ..., **options: Any
        ) -> Any: ...

        def _resolve(self, targets: Any) -> tuple[list[int], bool]: ...

        def _reflecting(self, question: Question) -> Question: ...

    # -- asking -----------------------------------------------------------------------------
    def _ask_db(self, message: Question, timeout: float = 30.0) -> Any:
        if not self._config.db:
            raise ActorClusterError(
                "this cluster keeps no task database (it was started with db 'none')"
            )
        message = self._reflecting(message)
        # through the I/O actor: the database may then send results to this client
        reply = self._io.ask(Ask(self._config.db, message, timeout), timeout=timeout)
        return reply.get(timeout=timeout)

    def _job_ids(self, jobs: Jobs) -> tuple[list[str], bool]:
        """msg_ids of `jobs` (msg_ids, indices into `history`, AsyncResults); None: the last.

        Returns:
            The ids, and whether one job (not a list) was given.
        """
        if jobs is None:
            if not self.history:
                raise UnknownTask("this client has submitted nothing yet: name msg_ids")
            jobs = -1
        single = isinstance(jobs, str | int)
        items = [jobs] if isinstance(jobs, str | int | AsyncResult) else list(jobs)
        ids: list[str] = []
        for job in items:
            if isinstance(job, AsyncResult):
                ids.extend(job.msg_ids)
            elif isinstance(job, int):
                try:
                    ids.append(self.history[job])
                except IndexError:
                    raise UnknownTask(
                        f"no task at index {job}: this client submitted {len(self.history)}"
                    ) from None
            else:
                ids.append(job)
        return ids, single

    # -- queries ----------------------------------------------------------------------------
    def db_query(self, query: dict[str, Any], keys: Sequence[str] | None = None) -> list[Any]:
        """Task records matching `query` (the Mongo subset: `$in $nin $eq $ne $gt $gte $lt
        $lte $exists`), with `keys` only (`msg_id` always; by default all but buffers).

        Raises:
            BadQuery: the query is not a dict or uses another operator (named in the error).
        """
        compile_query(query)  # a bad query fails here, with its own error
        records: list[Any] = self._ask_db(
            DbQuery(query=query, keys=None if keys is None else tuple(keys))
        )
        return records

    def hub_history(self) -> list[str]:
        """Every msg_id in the task database, in order of submission."""
        history: list[str] = self._ask_db(HubHistory())
        return history

    def get_result(self, indices_or_msg_ids: Jobs = None, block: bool | None = None) -> Any:
        """The results of tasks by msg_id (any client's) or index into `history`.

        Returns an `AsyncHubResult` that waits for the ones still pending (their value,
        with `block`).

        Raises:
            UnknownTask: a msg_id the task database does not hold (named).
        """
        ids, single = self._job_ids(indices_or_msg_ids)
        remote = [m for m in ids if m not in self._futures and m not in self.results]
        for msg_id in remote:
            self.metadata.setdefault(msg_id, Metadata(msg_id=msg_id))
        ar = AsyncHubResult(self, ids, fname="get_result", single=single)  # type: ignore[arg-type]
        if remote:
            try:
                fetched: Fetched = self._ask_db(
                    FetchResults(msg_ids=tuple(remote), client=self._io_node, watch=True)
                )
            except BaseException:
                self._forget(remote)
                raise
            if fetched.unknown:
                self._forget(remote)
                raise _unknown(fetched.unknown)
            for msg_id, submitted in fetched.submitted.items():
                self.metadata[msg_id]["submitted"] = submitted
            for result in fetched.results:
                self._on_result(result)
        return ar.get() if (self.block if block is None else block) else ar

    def _forget(self, msg_ids: Sequence[str]) -> None:
        for msg_id in msg_ids:
            self._futures.pop(msg_id, None)
            self.metadata.pop(msg_id, None)

    def result_status(self, msg_ids: Jobs, status_only: bool = True) -> dict[str, Any]:
        """Which of `msg_ids` are `completed` and which `pending`; without `status_only`,
        also each completed one's value (or error) under its msg_id.

        Raises:
            UnknownTask: a msg_id neither this client nor the task database knows.
        """
        ids, _ = self._job_ids(msg_ids)
        status: dict[str, Any] = {"completed": [], "pending": []}
        asked = [m for m in ids if m not in self.results]
        fetched = Fetched(results=(), pending=(), unknown=())
        if asked:
            fetched = self._ask_db(FetchResults(msg_ids=tuple(asked), status_only=status_only))
        if fetched.unknown:
            raise _unknown(fetched.unknown)
        found = {r.msg_id: r for r in fetched.results}
        for msg_id in ids:
            if msg_id in fetched.pending:
                status["pending"].append(msg_id)
                continue
            status["completed"].append(msg_id)
            if not status_only:
                if msg_id in self.results:
                    status[msg_id] = self.results[msg_id]
                else:
                    status[msg_id] = _value(found[msg_id])
        return status

    # -- purging ------------------------------------------------------------------------------
    def purge_local_results(self, jobs: Jobs | str = (), targets: Any = ()) -> None:
        """Forget this client's copies of finished results: `jobs`, those run on `targets`,
        or every one (`jobs="all"`).

        Raises:
            ActorClusterError: a job is still pending (named); nothing is forgotten.
        """
        if jobs == "all":
            with self._lock:
                doomed = [m for m in self.results if m not in self.outstanding]
        else:
            doomed = self._job_ids(jobs)[0] if jobs else []
            pending = [m for m in doomed if m in self.outstanding]
            if pending:
                raise _pending(pending)
            if targets:
                engines = set(self._resolve(targets)[0])
                doomed += [
                    m
                    for m, md in self.metadata.items()
                    if md.get("engine_id") in engines and m in self.results
                ]
        for msg_id in doomed:
            self.results.pop(msg_id, None)
            self.metadata.pop(msg_id, None)
            self._futures.pop(msg_id, None)
            self._unrecorded.pop(msg_id, None)

    def purge_hub_results(self, jobs: Jobs | str = (), targets: Any = ()) -> int:
        """Remove finished records from the task database: `jobs`, those run on `targets`,
        or every finished one (`jobs="all"`). Returns how many were removed.

        Raises:
            ActorClusterError: a job is still pending (named); nothing is removed.
            UnknownTask: a msg_id the database does not hold (named).
        """
        if jobs == "all":
            request = PurgeRecords(everything=True)
        else:
            ids = self._job_ids(jobs)[0] if jobs else []
            uuids = [self._engines[e] for e in self._resolve(targets)[0]] if targets else []
            request = PurgeRecords(msg_ids=tuple(ids), engines=tuple(uuids))
        purged: Purged = self._ask_db(request)
        if purged.pending:
            raise _pending(purged.pending)
        if purged.unknown:
            raise _unknown(purged.unknown)
        return purged.purged

    def purge_results(self, jobs: Jobs | str = (), targets: Any = ()) -> None:
        """Forget finished results here and in the task database (see the two purges)."""
        self.purge_hub_results(jobs, targets)
        self.purge_local_results(jobs, targets)

    def purge_everything(self) -> None:
        """Forget every finished result, here and in the task database, and the history."""
        self.purge_results("all")
        with self._lock:
            self.history = [m for m in self.history if m in self.outstanding]

    # -- resubmitting ------------------------------------------------------------------------
    def resubmit(self, indices_or_msg_ids: Jobs = None, block: bool | None = None) -> Any:
        """Run finished tasks again (any client's), under new msg_ids.

        Direct tasks go to the engine they ran on, load-balanced ones to the scheduler
        (with their targets, retries and timeout; their dependencies were met already).
        Returns an `AsyncHubResult` of the new tasks (their values, with `block`).

        Raises:
            UnknownTask: a msg_id the database does not hold (named).
            ActorClusterError: a task is still pending, or is not an apply or execute.
        """
        ids, single = self._job_ids(indices_or_msg_ids)
        new_ids = tuple(self.session.new_msg_id() for _ in ids)
        answer: Resubmission = self._ask_db(
            Resubmit(msg_ids=tuple(ids), new_ids=new_ids, client=self._io_node)
        )
        if answer.refused:
            reasons = "; ".join(f"{m!r}: {why}" for m, why in list(answer.refused.items())[:5])
            unknown = all("unknown" in why for why in answer.refused.values())
            error = UnknownTask if unknown else ActorClusterError
            raise error(f"cannot resubmit {len(answer.refused)} task(s): {reasons}")
        direct = [r for r in answer.requests if not isinstance(r, SubmitTask)]
        balanced = [r for r in answer.requests if isinstance(r, SubmitTask)]
        for group in (direct, balanced):
            if group:
                self._submit(group, result=AsyncHubResult, fname="resubmit")
        ar = AsyncHubResult(self, list(new_ids), fname="resubmit", single=single)  # type: ignore[arg-type]
        return ar.get() if (self.block if block is None else block) else ar


def _value(result: TaskResult) -> Any:
    if result.error is not None:
        return result.error
    return None if result.value is None else deserialize(result.value)
