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
from dataclasses import dataclass, replace
from typing import Any

from actorcluster.actors.messages import (
    DbQuery,
    EngineAdded,
    Fetched,
    FetchResults,
    HubHistory,
    Purged,
    PurgeRecords,
    Resubmission,
    Resubmit,
    SubmitTask,
    TaskLog,
    TaskResult,
)
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
class SchedulerAt:
    """Local, from the controller: the task scheduler's address (to re-run interrupted tasks)."""

    address: str


@dataclass(frozen=True)
class _FailInterrupted:
    """Timer: the engines of a restarted controller had their chance to deliver."""


class DBWriter(SocketActor):
    """Records every task and answers the clients' questions about them.

    Accepts: `TaskLog` (relay, scheduler), `EngineAdded` (Hub), and the asks `DbQuery`,
    `FetchResults`, `HubHistory`, `PurgeRecords`, `Resubmit` (clients). Emits: the results
    of watched tasks to their clients. Owns: a listening ROUTER, the `TaskStore` (and its
    journal's files).

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
        self.watchers: dict[str, set[str]] = {}
        self._commit_due = False
        self._interrupted = set(store.pending)  # left pending by a controller before this one
        self._interrupted_grace = interrupted_grace
        self._scheduler = ""

    def on_start(self) -> None:
        if self._interrupted:
            self.call_later(self._interrupted_grace, _FailInterrupted())

    def _fail_interrupted(self) -> None:
        """Tasks a previous controller left pending whose engine did not come back with
        their result: fail them in their records and tell their clients, so that nobody
        waits for them and nothing is lost silently. (A result that comes later still
        replaces the failure in the record.)"""
        interrupted = sorted(self._interrupted & self.store.pending)
        self._interrupted = set()
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
            case EngineAdded(id=engine, uuid=uuid):
                self.engines = {**self.engines, engine: uuid}  # logged events keep the old one
            case _Commit():
                self._commit_due = False
                self._commit()
            case _Settle():
                self._settle()
            case _FailInterrupted():
                self._fail_interrupted()
            case SchedulerAt(address=address):
                self._scheduler = address
            case DbQuery(query=query, keys=keys):
                self._commit()
                return self.store.find(query, None if keys is None else list(keys))
            case FetchResults():
                self._commit()
                return self._fetch(message)
            case HubHistory():
                return [r["msg_id"] for r in sorted(self.store.records(), key=_submitted)]
            case PurgeRecords():
                purged = self._purge(message)
                self._commit()
                return purged
            case Resubmit():
                resubmission = self._resubmit(message)
                self._commit()
                return resubmission
        return None

    # -- recording --------------------------------------------------------------------------
    def _log(self, log: TaskLog) -> None:
        store = self.store
        store.log(log, self.engines)
        if self.watchers:
            for _when, result, _received in log.finished:
                for client in self.watchers.pop(result.msg_id, ()):
                    self.send(f"actor://{client}/client", result)
        if store.journal is not None and store.dirty and not self._commit_due:
            self._commit_due = True
            self.call_later(self.commit_interval, _Commit())
        self._last_event = time.monotonic()
        if store.queued and not self._settle_due:
            self._settle_due = True
            self.call_later(self.settle_after, _Settle())

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


def _submitted(record: dict[str, Any]) -> float:
    submitted = record.get("submitted")
    return 0.0 if submitted is None else float(submitted.timestamp())
