"""The file task database: journal, snapshots, replay, damaged files, the folder lock, limits."""

from __future__ import annotations

import os
import time
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from actorcluster.actors.journal import BLOB_MIN, DatabaseCorrupt, DatabaseLocked, Journal
from actorcluster.actors.messages import Apply, SubmitTask, TaskLog, TaskResult
from actorcluster.actors.store import TaskStore, open_store
from actorcluster.transport import Item, Session, serialize

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def _record(i: int, size: int = 10) -> dict[str, Any]:
    return {
        "msg_id": f"m{i}",
        "submitted": NOW + timedelta(seconds=i),
        "completed": None,
        "header": {"msg_id": f"m{i}", "date": NOW},
        "buffers": [bytes([i % 256]) * size],
        "result_buffers": None,
    }


def _finish(store: TaskStore, i: int) -> None:
    store.update(f"m{i}", {"completed": NOW, "result_buffers": [b"value %d" % i]})


def _reopen(folder: Path, **limits: Any) -> TaskStore:
    store = open_store("tinydb", folder, **limits)
    assert store is not None
    return store


def test_committed_changes_survive_without_a_clean_close(tmp_path: Path) -> None:
    store = _reopen(tmp_path)
    assert store.journal is not None
    for i in range(100):
        store.insert(_record(i))
    for i in range(0, 100, 2):
        _finish(store, i)
    store.commit()
    os.close(store.journal._lock_fd)  # as if the process died: no snapshot, no close
    again = _reopen(tmp_path)
    assert len(again) == 100
    record = again.get("m42")
    assert record["completed"] == NOW and record["result_buffers"] == [b"value 42"]
    assert record["submitted"] == NOW + timedelta(seconds=42)  # datetimes come back aware
    assert isinstance(record["buffers"][0], bytes)
    assert again.pending == {f"m{i}" for i in range(1, 100, 2)}


def test_a_record_finished_after_a_commit_is_journaled_by_what_changed(tmp_path: Path) -> None:
    store = _reopen(tmp_path)
    assert store.journal is not None
    store.insert(_record(7, size=1000))
    store.commit()
    written = store.journal.journal_bytes
    _finish(store, 7)
    store.update("m7", {"stdout": "hello"})
    store.commit()
    assert store.journal.journal_bytes - written < 300  # not the 1,000-byte request again
    os.close(store.journal._lock_fd)  # as if the process died
    record = _reopen(tmp_path).get("m7")
    assert record["buffers"] == [bytes([7]) * 1000]
    assert record["completed"] == NOW and record["result_buffers"] == [b"value 7"]
    assert record["stdout"] == "hello"


def test_replayed_events_make_the_records_the_events_made(tmp_path: Path) -> None:
    # Two tasks arrived together in one wire message (journaled as the bytes they came in),
    # one was made in the controller (journaled as itself); one result came alone.
    session = Session(b"test-key-0123456789")
    tasks = [
        SubmitTask(
            request=Apply(msg_id=f"e{i}", client="127.0.0.1:1", payload=serialize((i, "x"))),
            targets=(0,),
            retries=1,
        )
        for i in (1, 2, 3)
    ]
    items = [Item("task", None, task) for task in tasks[:2]]
    wire = session.unpack(session.pack(items))
    assert isinstance(wire.content, bytes)
    arrived = [(1.0, item.message, (wire.content, i)) for i, item in enumerate(wire.items)]
    result = TaskResult(msg_id="e1", engine=0, status="ok", value=serialize(2), metadata={})
    alone = session.unpack(session.pack([Item("task", None, result)]))
    late = TaskResult(msg_id="e4", engine=0, status="ok", value=serialize(3), metadata={})
    log = TaskLog(
        queue="task",
        submitted=(*arrived, (1.5, tasks[2], None)),
        assigned=((1.2, "e1", 0),),
        finished=(
            (2.0, alone.items[0].message, (alone.content, 0)),
            (3.0, late, None),  # its submission never heard of
        ),
    )
    stores = [_reopen(tmp_path), TaskStore()]
    for store in stores:
        store.log(log, {0: "engine-0"})
    file_store, memory = stores
    file_store.commit()
    assert file_store.journal is not None
    journaled = file_store.journal.journal_path.read_bytes()
    assert journaled.count(wire.content) == 1 and alone.content in journaled
    os.close(file_store.journal._lock_fd)  # as if the process died
    again = _reopen(tmp_path)
    for msg_id in ("e1", "e2", "e3", "e4"):
        assert again.get(msg_id) == memory.get(msg_id)
    assert again.get("e1")["engine_uuid"] == "engine-0"
    assert again.pending == {"e2", "e3"}


def test_a_logged_message_from_the_network_is_kept_as_the_bytes_it_came_in() -> None:
    # A burst of tasks must not keep its messages alive (for the garbage collector to
    # scan again and again) until something reads the records.
    session = Session(b"test-key-0123456789")
    request = Apply(msg_id="n1", client="127.0.0.1:1", engine=0, payload=serialize(41))
    wire = session.unpack(session.pack([Item("relay", None, request)]))
    arrived = wire.items[0].message
    gone = weakref.ref(arrived)
    store = TaskStore()
    store.log(TaskLog(queue="mux", submitted=((1.0, arrived, (wire.content, 0)),)), {})
    del wire, arrived
    assert gone() is None
    assert store.queued == 1  # not built yet
    (record,) = store.find({"msg_id": "n1"})
    assert record["engine_uuid"] is None and record["header"]["msg_id"] == "n1"
    assert store.queued == 0


def _closed_with_three_records(folder: Path) -> Path:
    """Write three records to a file database in `folder`, one commit (frame) each, and
    close it; return its journal."""
    store = _reopen(folder)
    assert store.journal is not None
    for i in range(3):
        store.insert(_record(i))
        store.commit()
    store.close()
    return folder / "journal.bin"


def _frames(journal: Path) -> list[tuple[int, int]]:
    """(offset, end) of each frame of `journal`."""
    data, offset, frames = journal.read_bytes(), 0, []
    while offset < len(data):
        end = offset + 8 + int.from_bytes(data[offset : offset + 4], "little")
        frames.append((offset, end))
        offset = end
    return frames


def test_a_torn_last_frame_is_ignored_and_cut_off(tmp_path: Path) -> None:
    journal = _closed_with_three_records(tmp_path)
    intact = journal.stat().st_size
    with journal.open("ab") as f:
        f.write((1000).to_bytes(4, "little") + b"\0\0\0\0" + b"half a frame")  # died mid-write
    again = _reopen(tmp_path)
    assert len(again) == 3 and "m1" in again.pending
    assert journal.stat().st_size == intact  # new frames will not follow the torn one


def test_a_damaged_file_is_refused_by_name_and_left_untouched(tmp_path: Path) -> None:
    store = _reopen(tmp_path)
    assert store.journal is not None
    store.insert(_record(1))
    store.snapshot()
    store.close()
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_bytes(b'{"tasks": {"1": {"msg_id": "m1"')
    with pytest.raises(DatabaseCorrupt, match=r"snapshot\.json"):
        _reopen(tmp_path)
    assert snapshot.read_bytes() == b'{"tasks": {"1": {"msg_id": "m1"'
    recovered = _reopen(tmp_path, recover=True)  # moved aside, an empty database instead
    assert len(recovered) == 0
    assert any(p.name.startswith("snapshot.json.corrupt-") for p in tmp_path.iterdir())


def test_a_damaged_frame_inside_the_journal_is_refused(tmp_path: Path) -> None:
    journal = _closed_with_three_records(tmp_path)
    data = bytearray(journal.read_bytes())
    start, end = _frames(journal)[1]
    data[(start + end) // 2] ^= 0xFF  # one flipped byte in the second of three frames
    journal.write_bytes(bytes(data))
    with pytest.raises(DatabaseCorrupt, match=r"journal\.bin"):
        _reopen(tmp_path)
    assert journal.read_bytes() == bytes(data)  # left as it was
    kept = _reopen(tmp_path, recover=True)
    assert [r["msg_id"] for r in kept.records()] == ["m0"]


def test_a_second_owner_of_the_folder_is_refused(tmp_path: Path) -> None:
    first = _reopen(tmp_path)
    with pytest.raises(DatabaseLocked, match=f"pid {os.getpid()}"):
        Journal(tmp_path)
    assert first.journal is not None
    first.close()
    Journal(tmp_path).close()  # free again once the owner let go


def test_big_buffers_of_a_snapshot_live_in_blobs_and_unused_ones_are_dropped(
    tmp_path: Path,
) -> None:
    store = _reopen(tmp_path)
    assert store.journal is not None
    store.insert(_record(1, size=BLOB_MIN))
    store.insert(_record(2, size=BLOB_MIN + 1))
    store.snapshot()
    blobs = tmp_path / "blobs"
    assert len(list(blobs.iterdir())) == 2
    assert (tmp_path / "snapshot.json").stat().st_size < BLOB_MIN  # not inside the JSON
    store.remove(["m1"])
    store.snapshot()
    assert len(list(blobs.iterdir())) == 1
    store.close()
    assert _reopen(tmp_path).get("m2")["buffers"] == [bytes([2]) * (BLOB_MIN + 1)]


def test_the_record_limit_culls_the_oldest_finished_and_never_a_pending_one() -> None:
    store = TaskStore(record_limit=100)
    for i in range(150):
        store.insert(_record(i))
        if i % 3:
            _finish(store, i)
    assert len(store) <= 100
    assert all(f"m{i}" in store for i in range(0, 150, 3))  # every pending one is kept
    assert "m149" in store and "m1" not in store  # the oldest finished went first


def test_the_size_limit_bounds_the_bytes_kept() -> None:
    store = TaskStore(size_limit=100_000)
    for i in range(100):
        store.insert(_record(i, size=5_000))
        _finish(store, i)
    assert store.nbytes <= 100_000 and store.culled > 0
    assert "m99" in store


def test_ten_thousand_journaled_inserts_and_updates_stay_fast(tmp_path: Path) -> None:
    store = _reopen(tmp_path)
    assert store.journal is not None
    started = time.perf_counter()
    for i in range(10_000):
        store.insert(_record(i))
        if i % 100 == 99:
            store.commit()
    for i in range(10_000):
        _finish(store, i)
    store.commit()
    assert time.perf_counter() - started < 10  # linear: ~0.3 s here; the stock path, minutes
    store.close()
    assert len(_reopen(tmp_path)) == 10_000
