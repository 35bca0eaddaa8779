"""The in-memory task store: O(1) writes, index lookups, queries through TinyDB."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from actorcluster.actors.query import BadQuery
from actorcluster.actors.store import TaskStore

from actorcluster.error import UnknownTask

NOW = datetime(2026, 11, 21, tzinfo=UTC)


def _record(i: int) -> dict[str, object]:
    return {
        "msg_id": f"m{i}",
        "submitted": NOW + timedelta(seconds=i),
        "completed": None,
        "client_uuid": "me" if i % 2 else "other",
        "buffers": [b"x" * 10],
    }


def test_ten_thousand_inserts_and_updates_take_linear_time() -> None:
    store = TaskStore()
    started = time.perf_counter()
    for i in range(10_000):
        store.insert(_record(i))
    for i in range(10_000):
        store.update(f"m{i}", {"completed": NOW})
    assert time.perf_counter() - started < 5  # the stock TinyDB path takes ~16 s here
    assert len(store) == 10_000
    assert store.get("m9999")["completed"] == NOW


def test_queries_go_through_tinydb_and_msg_ids_through_the_index() -> None:
    store = TaskStore()
    for i in range(10):
        store.insert(_record(i))
    store.update("m3", {"completed": NOW})
    assert [r["msg_id"] for r in store.find({"completed": {"$ne": None}})] == ["m3"]
    assert [r["msg_id"] for r in store.find({"msg_id": {"$in": ["m7", "m2", "nope"]}})] == [
        "m2",
        "m7",
    ]
    assert [r["msg_id"] for r in store.find({"msg_id": "m5", "client_uuid": "me"})] == ["m5"]
    first = store.find({"msg_id": "m1"})[0]
    assert "buffers" not in first and isinstance(first["submitted"], datetime)
    assert store.find({"msg_id": "m1"}, keys=["completed"]) == [{"msg_id": "m1", "completed": None}]
    with pytest.raises(BadQuery, match="'\\$where'"):
        store.find({"msg_id": {"$where": "1"}})


def test_unknown_msg_ids_are_named_and_removal_forgets() -> None:
    store = TaskStore()
    store.insert(_record(1))
    with pytest.raises(UnknownTask, match="unknown msg_id 'm9'"):
        store.update("m9", {"completed": NOW})
    store.remove(["m1", "m9"])
    assert len(store) == 0 and "m1" not in store
    with pytest.raises(KeyError):
        store.get("m1")
