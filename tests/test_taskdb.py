"""The task database from a client: queries, any client's results, purges, resubmission."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from actorcluster.actors.query import BadQuery

from actorcluster import Client, Cluster
from actorcluster.error import ActorClusterError, RemoteError, UnknownTask
from tests.conftest import wait_until

_GATES: dict[str, threading.Event] = {}


def _held_until(gate: str) -> str:
    """A task that runs until the test sets `_GATES[gate]` (at most 10 s).

    It goes by reference: the in-process engines run it in this process, with this module's
    gates."""
    _GATES[gate].wait(10)
    return "released"


@pytest.fixture
def gate(request: pytest.FixtureRequest) -> Iterator[threading.Event]:
    """An event that releases a task of `_held_until(request.node.name)`; set at teardown."""
    event = _GATES[request.node.name] = threading.Event()
    yield event
    event.set()
    del _GATES[request.node.name]


def _recorded(rc: Client, msg_ids: list[str]) -> bool:
    found = rc.db_query({"msg_id": {"$in": msg_ids}, "completed": {"$ne": None}}, ["msg_id"])
    return len(found) == len(msg_ids)


def test_every_request_and_result_is_recorded_with_the_specs_keys(rc: Client) -> None:
    ar = rc[0].apply_async(lambda x: x * 3, 14)
    assert ar.get(timeout=10) == 42
    wait_until(lambda: _recorded(rc, ar.msg_ids))
    (record,) = rc.db_query({"msg_id": ar.msg_ids[0]})
    for key in ("header", "content", "submitted", "client_uuid", "engine_uuid", "started",
                "completed", "resubmitted", "received", "result_header", "result_content",
                "queue", "stdout", "stderr"):  # fmt: skip
        assert key in record, key
    assert "buffers" not in record and "result_buffers" not in record  # not by default
    assert record["queue"] == "mux" and record["engine_uuid"] == rc._engines[0]
    assert record["result_content"]["status"] == "ok"
    assert isinstance(record["completed"], datetime) and record["completed"].tzinfo is not None
    assert record["submitted"] <= record["received"]
    (with_buffers,) = rc.db_query({"msg_id": ar.msg_ids[0]}, keys=["result_buffers"])
    assert all(isinstance(b, bytes) for b in with_buffers["result_buffers"])


def test_the_specs_example_queries_select_what_they_say(rc: Client) -> None:
    before = datetime.now().astimezone()
    lview = rc.load_balanced_view()
    ars = [lview.apply_async(lambda i: i, i) for i in range(4)]
    failing = rc[1].apply_async(lambda: 1 / 0)
    for ar in ars:
        ar.get(timeout=10)
    with pytest.raises(RemoteError):
        failing.get(timeout=10)
    ids = [m for ar in [*ars, failing] for m in ar.msg_ids]
    wait_until(lambda: _recorded(rc, ids))
    mine = {"client_uuid": rc._io_node}
    recent = rc.db_query({**mine, "submitted": {"$gte": before - timedelta(seconds=1)}}, ["msg_id"])
    assert set(ids) <= {r["msg_id"] for r in recent}
    on_one = rc.db_query({**mine, "engine_uuid": rc._engines[1]}, ["msg_id"])
    assert failing.msg_ids[0] in {r["msg_id"] for r in on_one}
    balanced = rc.db_query({**mine, "queue": "task"}, ["msg_id", "queue"])
    assert {r["msg_id"] for r in balanced} == {m for ar in ars for m in ar.msg_ids}
    started = rc.db_query({**mine, "started": {"$exists": True}}, ["msg_id"])
    assert set(ids) <= {r["msg_id"] for r in started}
    pending = rc.db_query({**mine, "completed": None}, ["msg_id"])
    assert not set(ids) & {r["msg_id"] for r in pending}


def test_a_bad_query_is_refused_with_the_operator_named(rc: Client) -> None:
    with pytest.raises(BadQuery, match=r"'\$where'"):
        rc.db_query({"msg_id": {"$where": "sleep(1)"}})
    with pytest.raises(BadQuery, match="dict"):
        rc.db_query("msg_id == 1")  # type: ignore[arg-type]


def test_a_second_client_gets_a_finished_result_by_msg_id(inprocess: Cluster, rc: Client) -> None:
    ar = rc[0].apply_async(lambda: {"answer": 42})
    ar.get(timeout=10)
    wait_until(lambda: _recorded(rc, ar.msg_ids))
    with inprocess.connect_client() as other:
        assert other.get_result(ar.msg_ids[0], block=True) == {"answer": 42}
        hub_ar = other.get_result(ar.msg_ids[0])
        assert hub_ar.metadata["engine_uuid"] == rc._engines[0]
        assert other.result_status(ar.msg_ids, status_only=False) == {
            "completed": ar.msg_ids,
            "pending": [],
            ar.msg_ids[0]: {"answer": 42},
        }


def test_a_second_client_waits_for_a_pending_result(
    inprocess: Cluster, rc: Client, gate: threading.Event, request: pytest.FixtureRequest
) -> None:
    ar = rc[0].apply_async(_held_until, request.node.name)
    wait_until(lambda: rc.db_query({"msg_id": ar.msg_ids[0]}, ["msg_id"]) != [])
    with inprocess.connect_client() as other:
        hub_ar = other.get_result(ar.msg_ids[0])
        assert not hub_ar.ready()
        assert other.result_status(ar.msg_ids)["pending"] == ar.msg_ids
        gate.set()
        assert hub_ar.get(timeout=10) == "released"


def test_unknown_msg_ids_are_named(rc: Client) -> None:
    with pytest.raises(UnknownTask, match="'no-such-task'"):
        rc.get_result("no-such-task")
    with pytest.raises(UnknownTask, match="'no-such-task'"):
        rc.result_status(["no-such-task"])
    with pytest.raises(UnknownTask, match="'no-such-task'"):
        rc.resubmit("no-such-task")


def test_resubmit_runs_a_finished_task_again_under_a_new_msg_id(
    inprocess: Cluster, rc: Client
) -> None:
    direct = rc[1].apply_async(lambda x: x + 1, 1)
    balanced = rc.load_balanced_view().apply_async(lambda x: x * 2, 21)
    assert (direct.get(timeout=10), balanced.get(timeout=10)) == (2, 42)
    ids = [*direct.msg_ids, *balanced.msg_ids]
    wait_until(lambda: _recorded(rc, ids))
    with inprocess.connect_client() as other:
        again = other.resubmit(ids)
        assert again.get(timeout=10) == [2, 42]
        assert not set(again.msg_ids) & set(ids)
    wait_until(lambda: _recorded(rc, again.msg_ids))
    old = {r["msg_id"]: r for r in rc.db_query({"msg_id": {"$in": ids}}, ["resubmitted"])}
    assert [old[m]["resubmitted"] for m in ids] == again.msg_ids
    (rerun,) = rc.db_query({"msg_id": again.msg_ids[0]}, ["engine_uuid", "queue"])
    assert rerun["engine_uuid"] == rc._engines[1] and rerun["queue"] == "mux"


def test_resubmit_and_purge_refuse_a_pending_task(
    rc: Client, gate: threading.Event, request: pytest.FixtureRequest
) -> None:
    ar = rc[0].apply_async(_held_until, request.node.name)
    wait_until(lambda: rc.db_query({"msg_id": ar.msg_ids[0]}, ["msg_id"]) != [])
    try:
        with pytest.raises(ActorClusterError, match="pending"):
            rc.resubmit(ar.msg_ids)
        with pytest.raises(ActorClusterError, match="pending"):
            rc.purge_hub_results(ar.msg_ids)
        with pytest.raises(ActorClusterError, match="pending"):
            rc.purge_local_results(ar.msg_ids)
    finally:
        gate.set()
    ar.get(timeout=10)


def test_purges_forget_finished_results_here_and_in_the_database(rc: Client) -> None:
    ars = [rc[i % 2].apply_async(lambda i: i, i) for i in range(6)]
    ids = [ar.msg_ids[0] for ar in ars]
    for ar in ars:
        ar.get(timeout=10)
    wait_until(lambda: _recorded(rc, ids))
    assert rc.purge_hub_results(ids[:2]) == 2
    rc.purge_local_results(ids[:2])
    assert ids[0] not in rc.results and ids[2] in rc.results
    assert rc.db_query({"msg_id": {"$in": ids[:2]}}) == []
    history = rc.hub_history()
    assert ids[2:] == [m for m in history if m in ids]  # in order of submission
    rc.purge_results(targets=[1])  # what ran on engine 1: ids 3 and 5
    remaining = {r["msg_id"] for r in rc.db_query({"msg_id": {"$in": ids}}, ["msg_id"])}
    assert remaining == {ids[2], ids[4]}
    rc.purge_everything()
    assert rc.db_query({"msg_id": {"$in": ids}}) == [] and rc.results == {}


def test_queue_status_lists_msg_ids_when_verbose(rc: Client) -> None:
    ar = rc[0].apply_async(lambda: 1)
    ar.get(timeout=10)
    wait_until(lambda: _recorded(rc, ar.msg_ids))
    status = rc.queue_status(verbose=True)
    assert ar.msg_ids[0] in status[0]["completed"]
    assert status[0]["queue"] == [] and "unassigned" in status


def test_a_cluster_without_a_database_says_so() -> None:
    with (
        Cluster(n=0, mode="inprocess", db="none") as rc,
        pytest.raises(ActorClusterError, match="no task database"),
    ):
        rc.db_query({})


def test_control_requests_are_not_tasks_in_the_database(rc: Client) -> None:
    """`clear`, `abort` and `shutdown` answer their client but leave no task records."""
    task = rc[0].apply_async(abs, -1)
    assert task.get(timeout=10) == 1
    clear = rc.clear(block=False)
    clear.get(timeout=10)
    abort = rc.abort(targets=0, block=False)
    abort.get(timeout=10)
    history = rc.hub_history()
    assert task.msg_ids[0] in history
    assert not set(clear.msg_ids + abort.msg_ids) & set(history)
    assert rc.db_query({"completed": None}, ["msg_id"]) == []  # none left pending
