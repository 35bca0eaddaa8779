"""The DB writer records what it hears, in whatever order it hears it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from actorcluster.actors.dbwriter import DBWriter
from actorcluster.actors.messages import Apply, DbQuery, EngineAdded, TaskLog, TaskResult
from actorcluster.actors.store import open_store
from actorcluster.transport import Session, serialize

from tests.conftest import wait_until


@pytest.fixture
def db() -> Iterator[pykka.ActorRef[Any]]:
    ref = DBWriter.start(Session(b"test-key-0123456789"), "127.0.0.1", open_store("memory"))
    try:
        yield ref
    finally:
        ref.stop(block=True, timeout=5)


def test_a_result_heard_before_its_request_is_kept_when_the_request_comes(
    db: pykka.ActorRef[Any],
) -> None:
    # A direct task's result reaches the relay from the engine, its request's copy from the
    # client: the result may come first. The request must not wipe it out.
    now = time.time()
    request = Apply(
        msg_id="m1",
        client="127.0.0.1:1",
        engine=0,
        payload=serialize(1),
        direct=True,
        submitted=now - 0.001,  # by the client's clock
    )
    result = TaskResult(msg_id="m1", engine=0, status="ok", value=serialize(2), direct=True)
    db.tell(TaskLog(queue="mux", finished=((now, result, None),)))
    db.tell(TaskLog(queue="mux", submitted=((now + 0.001, request, None),)))
    (record,) = db.ask(DbQuery(query={"msg_id": "m1"}, keys=None), timeout=5)
    assert record["completed"] is not None and record["result_content"]["status"] == "ok"
    assert record["metadata"]["targets"] == [0]
    assert record["submitted"] <= record["received"]  # submitted when the client sent it
    pending = db.ask(DbQuery(query={"completed": None}, keys=["msg_id"]), timeout=5)
    assert pending == []


def test_records_are_built_once_the_events_stop_without_anything_reading_them() -> None:
    store = open_store("memory")
    ref = DBWriter.start(Session(b"test-key-0123456789"), "127.0.0.1", store, settle_after=0.1)
    try:
        now = time.time()
        requests = tuple(
            (now, Apply(msg_id=f"m{i}", client="127.0.0.1:1", engine=0, payload=serialize(i)), None)
            for i in range(50)
        )
        ref.tell(TaskLog(queue="mux", submitted=requests))
        ref.ask(EngineAdded(id=0, uuid="u0", node="127.0.0.1:2"), timeout=5)  # after the log
        assert store.queued == 50  # heard, and only queued while events may still come
        wait_until(lambda: store.queued == 0, 10)  # then built by the writer, unasked
        found = ref.ask(DbQuery(query={"completed": None}, keys=["msg_id"]), timeout=5)
        assert len(found) == 50
    finally:
        ref.stop(block=True, timeout=5)
