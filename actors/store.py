"""Task records in a TinyDB table, written in O(1) and found by msg_id through an index.

TinyDB's own write path reads, converts and writes back the whole table on every insert
(O(n) each). The store keeps the table's dict live in TinyDB's MemoryStorage and edits it
in place; TinyDB serves the queries (`search` with a compiled `Matcher`). Only the DB
writer actor touches a store: TinyDB is not thread-safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actorcluster.actors.query import compile_query
from tinydb import TinyDB
from tinydb.storages import MemoryStorage

from actorcluster.error import UnknownTask

__all__ = ["TaskStore"]

_TABLE = "tasks"
_BUFFERS = ("buffers", "result_buffers")


class TaskStore:
    """Task records by msg_id, queryable with the Mongo subset of `actors.query`."""

    def __init__(self) -> None:
        self.db = TinyDB(storage=MemoryStorage)
        self.table = self.db.table(_TABLE, cache_size=0)  # records change under it: no cache
        self._live: dict[str, dict[str, Any]] = {}
        self.db.storage.memory = {_TABLE: self._live}  # type: ignore[attr-defined]
        self._doc_ids: dict[str, str] = {}
        self._next = 1

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._doc_ids

    def insert(self, record: dict[str, Any]) -> None:
        """Add a record (it must have a `msg_id`); a known msg_id is updated instead."""
        msg_id = record["msg_id"]
        if msg_id in self._doc_ids:
            self.update(msg_id, record)
            return
        doc_id = str(self._next)
        self._next += 1
        self._live[doc_id] = dict(record)
        self._doc_ids[msg_id] = doc_id

    def update(self, msg_id: str, fields: dict[str, Any]) -> None:
        """Set `fields` on the record of `msg_id`.

        Raises:
            UnknownTask: no record has that msg_id.
        """
        self._record(msg_id).update(fields)

    def get(self, msg_id: str) -> dict[str, Any]:
        """The record of `msg_id` (a copy).

        Raises:
            UnknownTask: no record has that msg_id.
        """
        return dict(self._record(msg_id))

    def remove(self, msg_ids: Iterable[str]) -> None:
        """Forget these records (unknown ids are ignored)."""
        for msg_id in msg_ids:
            doc_id = self._doc_ids.pop(msg_id, None)
            if doc_id is not None:
                del self._live[doc_id]

    def find(
        self, query: dict[str, Any], keys: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Records matching `query`, in insertion order, with `keys` only (msg_id always).

        Without `keys`, every key but the buffers. A `msg_id` equality or `$in` uses the index.

        Raises:
            BadQuery: the query is outside the supported subset.
        """
        matcher = compile_query(query)
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
    return {k: record.get(k) for k in ("msg_id", *[k for k in keys if k != "msg_id"])}
