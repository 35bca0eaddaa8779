"""Task records in a TinyDB table, written in O(1) and found by msg_id through an index.

TinyDB's own write path reads, converts and writes back the whole table on every insert
(O(n) each). The store keeps the table's dict live in TinyDB's MemoryStorage and edits it
in place; TinyDB serves the queries (`search` with a compiled `Matcher`). Only the DB
writer actor touches a store: TinyDB is not thread-safe.

Every change is an operation: for the DB writer's events, a `TaskLog` (the messages it
was told: those from the network as the bytes they came in), else the record or fields
written. Operations are queued and applied, in order, when something reads the store, the
DB writer is idle, or a limit is near: records are built when they are looked at, not
while tasks stream through (a read after a long stream waits for its records: about
20 us per task here, 2 s after 100,000 tasks). With a `Journal`, the operations are
journaled as they come (`commit()` makes them durable) and replayed at start. A record
limit and a size limit bound the store: past either, the oldest finished records are
culled; a pending task is never culled.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from actorcluster.actors.journal import Journal
from actorcluster.actors.messages import Request, SubmitTask, TaskLog
from actorcluster.actors.query import compile_query
from actorcluster.actors.records import as_bytes, finished_fields, submitted_record
from actorcluster.transport import Received, received_message
from tinydb import TinyDB
from tinydb.storages import MemoryStorage

from actorcluster.error import UnknownTask

__all__ = ["TaskStore", "open_store"]

_TABLE = "tasks"
_BUFFERS = ("buffers", "result_buffers")
_OVERHEAD = 512  # bytes a record costs besides its buffers, roughly
_MANY = 1000  # queued events past which applying them pauses the garbage collector


class TaskStore:
    """Task records by msg_id, queryable with the Mongo subset of `actors.query`.

    Args:
        journal: where changes are made durable (None: memory only); its records are loaded.
        record_limit: records kept at most (finished ones beyond it are culled).
        size_limit: bytes of buffers (plus a per-record overhead) kept at most.
    """

    def __init__(
        self,
        journal: Journal | None = None,
        *,
        record_limit: int = 1_000_000,
        size_limit: int = 2**30,
    ) -> None:
        self.db = TinyDB(storage=MemoryStorage)
        self.table = self.db.table(_TABLE, cache_size=0)  # records change under it: no cache
        self._live: dict[str, dict[str, Any]] = {}
        self.db.storage.memory = {_TABLE: self._live}  # type: ignore[attr-defined]
        self._doc_ids: dict[str, str] = {}
        self._next = 1
        self.journal = journal
        self.record_limit = record_limit
        self.size_limit = size_limit
        self._bytes = 0
        self._pending: set[str] = set()
        self.culled = 0
        self._queued: list[tuple[Any, ...]] = []  # operations not applied yet
        self._queued_events = 0  # events they hold (a logged batch holds many)
        self._queued_records = 0  # records they may add
        self._queued_bytes = 0  # buffer bytes they may add
        if journal is not None:
            records, operations = journal.load()
            gc.disable()  # many new containers at once: collections would rescan them all
            try:
                for record in records.values():
                    self._add(record)
                for operation in operations:
                    self._apply(operation)
            finally:
                gc.enable()

    @property
    def pending(self) -> set[str]:
        """The msg_ids of tasks without a final result."""
        self._settle()
        return self._pending

    @property
    def nbytes(self) -> int:
        """Buffer bytes kept (plus a per-record overhead)."""
        self._settle()
        return self._bytes

    def __len__(self) -> int:
        self._settle()
        return len(self._live)

    def __contains__(self, msg_id: object) -> bool:
        self._settle()
        return msg_id in self._doc_ids

    def submitted(self, msg_id: str) -> bool:
        """Whether the request of `msg_id` is recorded (its result may come first)."""
        self._settle()
        doc_id = self._doc_ids.get(msg_id)
        return doc_id is not None and self._live[doc_id].get("header") is not None

    # -- the DB writer's events ----------------------------------------------------------------
    def log(self, log: TaskLog, engines: Mapping[int, str]) -> None:
        """Record what a `TaskLog` tells; `engines`: the uuid of each engine id (kept as
        it is: it must not change afterwards).

        One operation, in which a message that came from the network is kept as the bytes
        it came in (a plain tuple), not as itself: a burst of tasks leaves nothing behind
        for the garbage collector to scan, and the journal writes those bytes without
        pickling anything again. Its records are built from them when the store is read,
        or when the DB writer has nothing else to do.
        """
        nbytes = sum(_payload_bytes(item) for _, item, _ in log.submitted)
        nbytes += sum(r.value.nbytes for _, r, _ in log.finished if r.value is not None)
        submitted, finished = _as_received(log.submitted), _as_received(log.finished)
        events = len(submitted) + len(log.assigned) + len(finished)
        operation = ("L", log.queue, submitted, log.assigned, finished, engines)
        self._write(operation, len(submitted), nbytes, events)

    # -- plain writes ---------------------------------------------------------------------------
    def insert(self, record: dict[str, Any]) -> None:
        """Add a record (it must have a `msg_id`). A known msg_id only gets the fields it
        lacks: a direct task's result may be recorded before its request."""
        self._write(("i", dict(record)), 1, _size(record))

    def update(self, msg_id: str, fields: dict[str, Any]) -> None:
        """Set `fields` on the record of `msg_id`.

        Raises:
            UnknownTask: no record has that msg_id.
        """
        self._settle()
        self._record(msg_id)
        self._write(("u", msg_id, dict(fields)))

    def _write(
        self,
        operation: tuple[Any, ...],
        records: int = 0,
        nbytes: int = 0,
        events: int = 1,
    ) -> None:
        """Queue `operation` (which may add `records` records of `nbytes`, and tells
        `events` events) and journal it."""
        self._queued.append(operation)
        self._queued_events += events
        if self.journal is not None:
            self.journal.append(operation)
        self._queued_records += records
        self._queued_bytes += nbytes
        if (
            len(self._live) + self._queued_records > self.record_limit
            or self._bytes + self._queued_bytes > self.size_limit
        ):
            self._settle()
            if len(self._live) > self.record_limit or self._bytes > self.size_limit:
                self._cull()

    @property
    def queued(self) -> int:
        """Events waiting to be applied to the records."""
        return self._queued_events

    def settle(self) -> None:
        """Apply the queued operations now (reads do it first anyway)."""
        self._settle()

    def _settle(self) -> None:
        """Apply the queued operations, in order."""
        if not self._queued:
            return
        queued, self._queued = self._queued, []
        collecting = gc.isenabled() and self._queued_events > _MANY
        self._queued_events = self._queued_records = self._queued_bytes = 0
        if collecting:
            gc.disable()  # many new records at once: collections would rescan them all
        try:
            for operation in queued:
                self._apply(operation)
        finally:
            if collecting:
                gc.enable()

    def _apply(self, operation: tuple[Any, ...]) -> None:
        """Make the change `operation` describes (also when replaying the journal)."""
        match operation:
            case ("L", queue, submitted, assigned, finished, engines):
                self._apply_log(queue, submitted, assigned, finished, engines)
            case ("i", record):
                self._insert(record)
            case ("u", msg_id, fields):
                if msg_id in self._doc_ids:  # else removed since
                    self._update(msg_id, fields)
            case ("d", msg_ids):
                self._remove(msg_ids)
            case _:
                raise ValueError(f"unknown task database operation {operation[:1]!r}")

    def _apply_log(
        self,
        queue: str,
        submitted: Sequence[tuple[float, Any, Any]],
        assigned: Sequence[tuple[float, str, int]],
        finished: Sequence[tuple[float, Any, Any]],
        engines: Mapping[int, str],
    ) -> None:
        unpickled: dict[int, list[Any]] = {}  # journaled messages: their contents, once each
        for when, item, received in submitted:
            if item is None:
                item = received_message(received, unpickled)
            engine_uuid = engines.get(getattr(item, "engine", -1))
            self._insert(submitted_record(when, item, queue, engine_uuid))
        for _when, msg_id, engine in assigned:
            if msg_id in self._doc_ids:
                self._update(msg_id, {"engine_uuid": engines.get(engine)})
        for when, result, received in finished:
            if result is None:
                result = received_message(received, unpickled)
            fields = finished_fields(when, result, engines.get(result.engine))
            if result.msg_id in self._doc_ids:
                self._update(result.msg_id, fields)
            else:  # its submission was culled, or recorded by a controller before this one
                self._insert({"msg_id": result.msg_id, "queue": queue, **fields})

    def _insert(self, record: dict[str, Any]) -> None:
        msg_id = record["msg_id"]
        if msg_id in self._doc_ids:
            known = self._record(msg_id)
            self._update(msg_id, {k: v for k, v in record.items() if known.get(k) is None})
        else:
            self._add(record)

    def _add(self, record: dict[str, Any]) -> None:
        doc_id = str(self._next)
        self._next += 1
        self._live[doc_id] = record
        self._doc_ids[record["msg_id"]] = doc_id
        self._bytes += _size(record)
        if record.get("completed") is None:
            self._pending.add(record["msg_id"])

    def _update(self, msg_id: str, fields: dict[str, Any]) -> None:
        record = self._record(msg_id)
        for key in _BUFFERS:
            if key in fields:
                self._bytes += _nbytes(fields[key]) - _nbytes(record.get(key))
        record.update(fields)
        if record.get("completed") is not None:
            self._pending.discard(msg_id)

    def get(self, msg_id: str) -> dict[str, Any]:
        """The record of `msg_id` (a copy).

        Raises:
            UnknownTask: no record has that msg_id.
        """
        self._settle()
        return dict(self._record(msg_id))

    def records(self) -> Iterable[dict[str, Any]]:
        """Every record, oldest first (for a snapshot)."""
        self._settle()
        return self._live.values()

    def remove(self, msg_ids: Iterable[str]) -> None:
        """Forget these records (unknown ids are ignored)."""
        self._settle()
        known = [m for m in msg_ids if m in self._doc_ids]
        if known:
            self._write(("d", known))

    def _remove(self, msg_ids: list[str]) -> None:
        for msg_id in msg_ids:
            doc_id = self._doc_ids.pop(msg_id, None)
            if doc_id is not None:
                self._bytes -= _size(self._live.pop(doc_id))
                self._pending.discard(msg_id)

    @property
    def dirty(self) -> bool:
        """Whether changes wait for `commit()`."""
        return self.journal is not None and self.journal.dirty

    def commit(self) -> None:
        """Make every journaled change durable."""
        if self.journal is not None:
            self.journal.commit()

    def snapshot(self) -> None:
        """Commit, then write every record as the journal's new snapshot."""
        if self.journal is not None:
            self.commit()
            self.journal.snapshot(iter(self.records()))

    def close(self) -> None:
        """Commit, and let go of the journal's files."""
        if self.journal is not None:
            self.commit()
            self.journal.close()

    def _cull(self) -> None:
        """Remove the oldest finished records until a tenth below both limits."""
        records, size = int(self.record_limit * 0.9), int(self.size_limit * 0.9)
        count, nbytes, doomed = len(self._live), self._bytes, []
        for record in self._live.values():
            if count <= records and nbytes <= size:
                break
            if record["msg_id"] not in self._pending:
                doomed.append(record["msg_id"])
                count -= 1
                nbytes -= _size(record)
        self.remove(doomed)
        self.culled += len(doomed)

    def find(
        self, query: dict[str, Any], keys: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Records matching `query`, in insertion order, with `keys` only (msg_id always).

        Without `keys`, every key but the buffers. A `msg_id` equality or `$in` uses the index.

        Raises:
            BadQuery: the query is outside the supported subset.
        """
        matcher = compile_query(query)
        self._settle()
        wanted = query.get("msg_id")
        if isinstance(wanted, str) or (isinstance(wanted, dict) and set(wanted) == {"$in"}):
            ids = [wanted] if isinstance(wanted, str) else wanted["$in"]
            doc_ids = sorted({self._doc_ids[m] for m in ids if m in self._doc_ids}, key=int)
            found: Sequence[Mapping[str, Any]] = [
                self._live[d] for d in doc_ids if matcher(self._live[d])
            ]
        else:
            found = self.table.search(matcher)
        return [_project(record, keys) for record in found]

    def _record(self, msg_id: str) -> dict[str, Any]:
        doc_id = self._doc_ids.get(msg_id)
        if doc_id is None:
            raise UnknownTask(f"unknown msg_id {msg_id!r} (not in this hub's task database)")
        return self._live[doc_id]


def _project(record: Mapping[str, Any], keys: Sequence[str] | None) -> dict[str, Any]:
    if keys is None:
        return {k: v for k, v in record.items() if k not in _BUFFERS}
    projected = {k: record.get(k) for k in ("msg_id", *[k for k in keys if k != "msg_id"])}
    for key in _BUFFERS:
        if projected.get(key):
            projected[key] = as_bytes(projected[key])  # received frames are memoryviews
    return projected


def _payload_bytes(item: Request | SubmitTask) -> int:
    request = item.request if isinstance(item, SubmitTask) else item
    payload = getattr(request, "payload", None)
    return 0 if payload is None else int(payload.nbytes)


def _as_received(
    entries: Sequence[tuple[float, Any, Received | None]],
) -> list[tuple[float, Any, Received | None]]:
    """Events to keep and journal: a message that came from the network only as the bytes
    it came in (the message itself is let go)."""
    return [(w, None, r) if r is not None else (w, m, None) for w, m, r in entries]


def _nbytes(buffers: Any) -> int:
    if not buffers:
        return 0
    try:
        return sum(map(len, buffers))  # bytes and received frames: len is their size
    except TypeError:  # a local PickleBuffer has no len
        return sum(memoryview(b).nbytes for b in buffers)


def _size(record: Mapping[str, Any]) -> int:
    return _OVERHEAD + _nbytes(record.get("buffers")) + _nbytes(record.get("result_buffers"))


def open_store(
    kind: str,
    folder: Path | None = None,
    *,
    recover: bool = False,
    record_limit: int = 1_000_000,
    size_limit: int = 2**30,
) -> TaskStore | None:
    """The task database of `kind`: "tinydb" (files in `folder`), "memory", or "none".

    Raises:
        ValueError: an unknown kind, or "tinydb" without a folder.
        DatabaseLocked: another process uses `folder`.
        DatabaseCorrupt: a file in `folder` is damaged (and `recover` is off).
    """
    if kind == "none":
        return None
    if kind == "memory":
        return TaskStore(record_limit=record_limit, size_limit=size_limit)
    if kind != "tinydb":
        raise ValueError(f"unknown task database {kind!r}: use 'tinydb', 'memory' or 'none'")
    if folder is None:
        raise ValueError("a 'tinydb' task database needs a folder for its files")
    journal = Journal(folder, recover=recover)
    try:
        return TaskStore(journal, record_limit=record_limit, size_limit=size_limit)
    except BaseException:
        journal.close()
        raise
