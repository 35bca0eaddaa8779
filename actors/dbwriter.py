"""The DB writer: the one owner of the task database.

Relays and the scheduler tell it what happened (`TaskLog`, in batches, so the hot paths
never wait on it); clients ask it for records, results, history, purges and resubmissions.
With a journal, changes are group-committed: written and fsynced at most every
`commit_interval` seconds while they keep coming, and always before an answer leaves, so
anything a client has read from the database survives a crash of the controller.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any

from actorcluster.actors.bounded import remember
from actorcluster.actors.messages import (
    DbQuery,
    EngineAdded,
    Fetched,
    FetchResults,
    HubHistory,
    Purged,
    PurgeRecords,
    Question,
    Redeliver,
    Request,
    Resubmission,
    Resubmit,
    SubmitTask,
    TaskLog,
    TaskResult,
    TasksRecorded,
)
from actorcluster.actors.questions import Consider, Questions, Recheck, Waiting
from actorcluster.actors.records import (
    finished_fields,
    request_of,
    result_of,
)
from actorcluster.actors.store import TaskStore
from actorcluster.transport import Address, Session, SocketActor

from actorcluster.error import TaskAborted

__all__ = ["DBWriter"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Commit:
    """Timer: make the journaled changes durable."""


@dataclass(frozen=True)
class _Settle:
    """Timer: build the records of the events heard, if the tasks stopped coming."""


@dataclass(frozen=True)
class Reporters:
    """Local, from the controller: the relay's and the task scheduler's addresses (they
    report to it; the scheduler re-runs interrupted tasks)."""

    relay: str
    scheduler: str


_LOGGED_LIMIT = 100_000  # recent requests remembered, to confirm their results cheaply


@dataclass
class _Acks:
    """What to confirm to one client or engine (`TasksRecorded`)."""

    requests: list[str] = field(default_factory=list)
    results: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _FailInterrupted:
    """Timer: the engines of a restarted controller had their chance to deliver."""


class DBWriter(SocketActor):
    """Records every task and answers the clients' questions about them.

    Accepts: `TaskLog` (relay, scheduler), `EngineAdded` (Hub), `Redeliver` (clients and
    engines of a restarted controller), and the asks `DbQuery`, `FetchResults`,
    `HubHistory`, `PurgeRecords`, `Resubmit` (clients: `Question`s, answered once the
    database holds what their asker has seen). Emits: the results of watched tasks to their
    clients, `TasksRecorded` to clients and engines (what is durable), `Answered` (asks) to
    engines and `ReportNow` to the relay and scheduler while a question waits. Owns: a
    listening ROUTER, the `TaskStore` (and its journal's files).

    Args:
        session: the cluster's session.
        host: the interface to bind.
        store: the store (with its journal for a file database).
        commit_interval: seconds between group commits while changes keep coming.
        settle_after: seconds without events after which the records are built from the
            events heard (until then, or until something reads them, events are only
            queued and journaled: a burst of tasks does not pay for its records).
        snapshot_bytes: journal size past which a snapshot is written and the journal reset.
        port: the port to listen on (0: any).
        interrupted_grace: seconds that tasks a previous controller left pending wait for
            their engines (back after a restart) to deliver, before they are failed.
    """

    def __init__(
        self,
        session: Session,
        host: str,
        store: TaskStore,
        *,
        commit_interval: float = 0.05,
        settle_after: float = 0.25,
        snapshot_bytes: int = 64 * 2**20,
        port: int = 0,
        interrupted_grace: float = 5.0,
    ) -> None:
        super().__init__(session, name="db", listen=f"tcp://{host}:{port}")
        self.store = store
        self.commit_interval = commit_interval
        self.settle_after = settle_after
        self._settle_due = False
        self._last_event = 0.0
        self.snapshot_bytes = snapshot_bytes
        self.engines: dict[int, str] = {}
        self.nodes: dict[str, str] = {}  # engine uuid -> its actor's node
        self.engine_nodes: dict[int, str] = {}  # engine id -> its actor's node
        self.watchers: dict[str, set[str]] = {}
        self._commit_due = False
        # left pending by a controller before this one (msg_id -> when it is failed, if its
        # engine does not bring its result back by then)
        self._interrupted = dict.fromkeys(store.pending, time.monotonic() + interrupted_grace)
        self._interrupted_grace = interrupted_grace
        self._scheduler = ""
        self.questions = Questions(self, ready=self._ready, answer=self._answer, fence=self._fence)
        self._acks: dict[tuple[str, str], _Acks] = {}  # what to confirm to (node, name)
        self._logged: dict[str, None] = {}  # recent msg_ids whose request was logged
        self._early: dict[str, str] = {}  # msg_id -> client node: its result logged first

    def on_start(self) -> None:
        if self._interrupted:
            self.call_later(self._interrupted_grace, _FailInterrupted())

    def _fail_interrupted(self) -> None:
        """Tasks a previous controller left pending whose engine did not come back with
        their result: fail them in their records and tell their clients, so that nobody
        waits for them and nothing is lost silently. (A result that comes later still
        replaces the failure in the record.)"""
        now = time.monotonic()
        due = {m for m, deadline in self._interrupted.items() if deadline <= now}
        for msg_id in due:
            del self._interrupted[msg_id]
        interrupted = sorted(due & self.store.pending)
        now = time.time()
        rerun = [m for m in interrupted if self._rerun(m)]
        if rerun:
            logger.warning("%d tasks pending at the last stop run again (retries left)", len(rerun))
        interrupted = [m for m in interrupted if m not in rerun]
        for msg_id in interrupted:
            error = TaskAborted(
                f"task {msg_id} was pending when its controller stopped, and its engine did "
                "not come back with its result (resubmit it to run it again)"
            )
            result = TaskResult(msg_id=msg_id, engine=-1, status="error", error=error)
            self.store.update(msg_id, finished_fields(now, result, None))
            clients = self.watchers.pop(msg_id, set())
            client = self.store.get(msg_id).get("client_uuid")
            if isinstance(client, str) and Address.dialable(client):
                clients.add(client)
            for client in clients:
                self.send(f"actor://{client}/client", result)
        if interrupted:
            logger.warning("%d tasks pending at the last stop were marked failed", len(interrupted))
            self._commit()

    def _redelivered(
        self, requests: tuple[Request | SubmitTask, ...], results: tuple[TaskResult, ...]
    ) -> None:
        """What a client or engine held for a restarted controller. Requests the database
        lacks are recorded, pending: an engine brings their result back, or they run again
        or fail after the grace, as those the last controller left pending. Results finish
        pending records (and reach their clients); a final record is never changed."""
        store, now = self.store, time.time()
        new: dict[str, Request | SubmitTask] = {}
        for item in requests:
            msg_id = (item.request if isinstance(item, SubmitTask) else item).msg_id
            if msg_id not in store:
                new[msg_id] = item
        for queue, balanced in (("mux", False), ("task", True)):
            items = [(now, r, None) for r in new.values() if isinstance(r, SubmitTask) == balanced]
            if items:
                self._log(TaskLog(queue=queue, submitted=tuple(items)))
        if new:
            logger.warning("%d tasks the database lacked were given back by a client", len(new))
            deadline = time.monotonic() + self._interrupted_grace
            self._interrupted.update(dict.fromkeys(new, deadline))
            self.call_later(self._interrupted_grace, _FailInterrupted())
        pending = store.pending
        finishing = [r for r in results if r.msg_id not in store or r.msg_id in pending]
        if finishing:
            self._log(TaskLog(queue="mux", finished=tuple((now, r, None) for r in finishing)))
            for result in finishing:
                client = result.client or self._client_of(result.msg_id)
                if client:  # it may wait for it still
                    self.send(f"actor://{client}/client", result)
        finished = {r.msg_id for r in finishing}
        for result in results:
            if result.msg_id not in finished:  # final already: its engine may let it go
                self._recorded(result)
        if store.journal is None:
            self._confirm()

    def _rerun(self, msg_id: str) -> bool:
        """Submit an interrupted load-balanced task again, if it has retries left; it keeps
        its msg_id, so its client gets the result it waits for."""
        record = self.store.get(msg_id)
        retries = (record.get("metadata") or {}).get("retries") or 0
        client = record.get("client_uuid")
        if not self._scheduler or record.get("queue") != "task" or retries <= 0:
            return False
        if not isinstance(client, str):
            return False
        try:
            task = request_of(record, msg_id, client)
        except (ValueError, KeyError, IndexError):
            return False
        if not isinstance(task, SubmitTask):
            return False
        self.send(self._scheduler, replace(task, retries=retries - 1))
        return True

    def on_receive(self, message: Any) -> Any:
        match message:
            case TaskLog():
                self._log(message)
            case EngineAdded(id=engine, uuid=uuid, node=node):
                self.engines = {**self.engines, engine: uuid}  # logged events keep the old one
                self.nodes[uuid] = node
                self.engine_nodes[engine] = node
            case _Commit():
                self._commit_due = False
                self._commit()
            case _Settle():
                self._settle()
            case _FailInterrupted():
                self._fail_interrupted()
            case Redeliver(requests=requests, results=results):
                self._redelivered(requests, results)
            case Reporters(relay=relay, scheduler=scheduler):
                self._scheduler = scheduler
                self.questions.reporters = tuple(a for a in (relay, scheduler) if a)
            case Question():
                return self.questions.ask(message, _named(message))
            case Consider() | Recheck():
                self.questions.handle(message)
        return None

    # -- questions: answered once the database holds what their asker has seen -----------------
    def _fence(self, waiting: Waiting) -> dict[str, list[str]]:
        """The engines of the pending tasks a question names (those its asker has no result
        of): their clients may hold those results."""
        store, held = self.store, set(waiting.ask.finished)
        by_node: dict[str, list[str]] = {}
        for msg_id in waiting.named:
            if msg_id in held or msg_id in waiting.fenced or msg_id not in store.pending:
                continue
            node = self.nodes.get(store.get(msg_id).get("engine_uuid") or "")
            if node is not None:
                by_node.setdefault(node, []).append(msg_id)
        return by_node

    def _ready(self, waiting: Waiting) -> bool:
        """Whether the database holds what the asker has seen, and the results the engines
        of the tasks it names said they gave."""
        store, ask = self.store, waiting.ask
        finished = (*ask.finished, *waiting.answered)
        pending = store.pending if finished else ()
        if any(m in pending or not store.submitted(m) for m in finished):
            return False
        if not all(store.submitted(m) for m in ask.known):
            return False
        named_wait_over = time.monotonic() >= waiting.named_until
        return named_wait_over or all(m in store for m in waiting.named)

    def _answer(self, waiting: Waiting) -> Any:
        match ask := waiting.ask:
            case DbQuery(query=query, keys=keys):
                self._commit()
                return self.store.find(query, None if keys is None else list(keys))
            case FetchResults():
                self._commit()
                return self._fetch(ask)
            case HubHistory():
                return [r["msg_id"] for r in sorted(self.store.records(), key=_submitted)]
            case PurgeRecords():
                purged = self._purge(ask)
                self._commit()
                return purged
            case Resubmit():
                resubmission = self._resubmit(ask)
                self._commit()
                return resubmission
        raise TypeError(f"not a question for the task database: {type(ask).__name__}")

    # -- recording --------------------------------------------------------------------------
    def _log(self, log: TaskLog) -> None:
        store = self.store
        store.log(log, self.engines)
        logged, early = self._logged, self._early
        for _when, item, _received in log.submitted:
            request = item.request if isinstance(item, SubmitTask) else item
            msg_id = request.msg_id
            if len(logged) >= _LOGGED_LIMIT:
                del logged[next(iter(logged))]
            logged[msg_id] = None
            self._ack(request.client, "client").requests.append(msg_id)
            if early and msg_id in early:  # its result came first: both are in now
                self._ack(early.pop(msg_id), "client").results.append(msg_id)
        for _when, result, _received in log.finished:
            self._recorded(result)
        if store.journal is None:
            self._confirm()
        elif store.dirty and not self._commit_due:
            self._commit_due = True
            self.call_later(self.commit_interval, _Commit())
        self._last_event = time.monotonic()
        self.questions.recheck()
        if store.queued and not self._settle_due:
            self._settle_due = True
            self.call_later(self.settle_after, _Settle())

    def _recorded(self, result: TaskResult) -> None:
        """`result` is in the log: tell its watchers, and (once durable) its engine and
        its client, the latter once its request is in too."""
        msg_id = result.msg_id
        for client in self.watchers.pop(msg_id, ()) if self.watchers else ():
            self.send(f"actor://{client}/client", result)
        engine = self.engine_nodes.get(result.engine)
        if engine is not None:
            self._ack(engine, "engine").results.append(msg_id)
        client = result.client or self._client_of(msg_id)
        if not client:
            return
        if msg_id in self._logged or self.store.submitted(msg_id):
            self._ack(client, "client").results.append(msg_id)
        else:  # confirmed once its request is in too
            remember(self._early, msg_id, client, _LOGGED_LIMIT)

    def _ack(self, node: str, name: str) -> _Acks:
        acks = self._acks.get((node, name))
        if acks is None:
            acks = self._acks[node, name] = _Acks()
        return acks

    def _client_of(self, msg_id: str) -> str:
        """The client of a recorded task ("" if unknown): for an outcome the controller made."""
        client = self.store.get(msg_id).get("client_uuid") if msg_id in self.store else None
        return client if isinstance(client, str) and Address.dialable(client) else ""

    def _confirm(self) -> None:
        """Tell clients and engines which of their requests and results are recorded
        (durable, with a journal): they let them go."""
        acks, self._acks = self._acks, {}
        for (node, name), ack in acks.items():
            if Address.dialable(node):
                recorded = TasksRecorded(requests=tuple(ack.requests), results=tuple(ack.results))
                self.send_to(node, name, recorded)

    def _settle(self) -> None:
        """Build the records once no event came for `settle_after` seconds."""
        quiet = time.monotonic() - self._last_event
        if quiet < self.settle_after:
            self.call_later(self.settle_after - quiet, _Settle())
            return
        self._settle_due = False
        self.store.settle()

    def _commit(self) -> None:
        journal = self.store.journal
        if journal is None:
            return
        self.store.commit()
        self._confirm()
        if journal.journal_bytes > self.snapshot_bytes:
            started = time.monotonic()
            self.store.snapshot()
            logger.info(
                "task database snapshot of %d records in %.2f s",
                len(self.store),
                time.monotonic() - started,
            )

    # -- answering ----------------------------------------------------------------------------
    def _fetch(self, request: FetchResults) -> Fetched:
        results, pending, unknown, submitted = [], [], [], {}
        for msg_id in request.msg_ids:
            if msg_id not in self.store:
                unknown.append(msg_id)
                continue
            record = self.store.get(msg_id)
            submitted[msg_id] = record.get("submitted")
            if msg_id in self.store.pending:
                pending.append(msg_id)
                if request.watch and request.client:
                    self.watchers.setdefault(msg_id, set()).add(request.client)
            elif not request.status_only:
                results.append(result_of(record))
        return Fetched(
            results=tuple(results),
            pending=tuple(pending),
            unknown=tuple(unknown),
            submitted=submitted if not request.status_only else {},
        )

    def _purge(self, request: PurgeRecords) -> Purged:
        store = self.store
        if request.everything:
            doomed = [r["msg_id"] for r in store.records() if r["msg_id"] not in store.pending]
        else:
            unknown = tuple(m for m in request.msg_ids if m not in store)
            pending = tuple(m for m in request.msg_ids if m in store.pending)
            if unknown or pending:
                return Purged(purged=0, pending=pending, unknown=unknown)
            doomed = list(request.msg_ids)
            if request.engines:
                engines = set(request.engines)
                doomed += [
                    r["msg_id"]
                    for r in store.records()
                    if r.get("engine_uuid") in engines and r["msg_id"] not in store.pending
                ]
        store.remove(doomed)
        return Purged(purged=len(doomed))

    def _resubmit(self, request: Resubmit) -> Resubmission:
        store, refused = self.store, {}
        requests = []
        for msg_id, new_id in zip(request.msg_ids, request.new_ids, strict=True):
            if msg_id not in store:
                refused[msg_id] = "unknown msg_id (not in the task database)"
            elif msg_id in store.pending:
                refused[msg_id] = "still pending: only finished tasks can be resubmitted"
            else:
                try:
                    requests.append(request_of(store.get(msg_id), new_id, request.client))
                except (ValueError, KeyError, IndexError) as e:
                    refused[msg_id] = str(e)
        if refused:
            return Resubmission(refused=refused)
        for msg_id, new_id in zip(request.msg_ids, request.new_ids, strict=True):
            store.update(msg_id, {"resubmitted": new_id})
        return Resubmission(requests=tuple(requests))

    def _after_stop(self) -> None:
        try:
            self.store.snapshot()
        except OSError:
            logger.exception("could not write the task database snapshot")
        self.store.close()
        super()._after_stop()


def _named(ask: Question) -> tuple[str, ...]:
    """The msg_ids a question names (a query's only where it matches msg_ids exactly)."""
    match ask:
        case FetchResults(msg_ids=ids) | PurgeRecords(msg_ids=ids) | Resubmit(msg_ids=ids):
            return ids
        case DbQuery(query=query):
            wanted = query.get("msg_id")
            if isinstance(wanted, dict):
                wanted = wanted.get("$in", wanted.get("$eq"))
            if isinstance(wanted, str):
                return (wanted,)
            if isinstance(wanted, list) and all(isinstance(m, str) for m in wanted):
                return tuple(wanted)
    return ()


def _submitted(record: dict[str, Any]) -> float:
    submitted = record.get("submitted")
    return 0.0 if submitted is None else float(submitted.timestamp())
