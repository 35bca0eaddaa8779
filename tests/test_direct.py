"""Requests and results go straight between client and engine, in order; the controller
records them (large data by its size only) and is not in their way."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zmq
from actorcluster.transport import actor_of
from actorcluster.transport._inbox import FdReady

from actorcluster import Client, Cluster, interactive
from actorcluster.error import ActorClusterError, EngineError, RemoteError, TaskAborted
from tests.conftest import Gate, io_thread_stuck, through_gate, wait_until

pytestmark = pytest.mark.slow

THRESHOLD = 2**16  # bytes; small, so the tests move little data


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    started = Cluster(n=1, bulk_threshold=THRESHOLD).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def client(cluster: Cluster) -> Iterator[Client]:
    with cluster.connect_client() as rc:
        rc.wait_for_engines(1, timeout=30)
        yield rc


def _big(seed: float = 0.0) -> np.ndarray:
    return np.arange(THRESHOLD // 8 * 3, dtype=np.float64) + seed


def _record(rc: Client, msg_id: str) -> dict:
    query = {"msg_id": msg_id, "completed": {"$ne": None}, "submitted": {"$ne": None}}
    wait_until(lambda: rc.db_query(query, ["msg_id"]) != [], 10)
    (record,) = rc.db_query(query, ["metadata", "buffers", "result_metadata"])
    return record


def test_direct_requests_and_results_do_not_wait_for_the_controller(
    cluster: Cluster, client: Client
) -> None:
    assert cluster.controller_process is not None
    pid = cluster.controller_process.pid
    os.kill(pid, signal.SIGSTOP)  # briefly: well within the engines' heartbeat allowance
    try:
        ar = client[0].apply_async(lambda x: x * 3, 14)
        assert ar.get(timeout=1) == 42
    finally:
        os.kill(pid, signal.SIGCONT)
    _record(client, ar.msg_ids[0])  # recorded once the controller runs again


def test_a_balanced_success_comes_straight_back_without_the_scheduler(
    cluster: Cluster, client: Client, engine_gate: Gate
) -> None:
    assert cluster.controller_process is not None
    pid = cluster.controller_process.pid
    ar = client.load_balanced_view().apply_async(through_gate, engine_gate.path)
    engine_gate.wait_for_task()  # the scheduler has placed it: now it is not needed
    os.kill(pid, signal.SIGSTOP)
    try:
        engine_gate.open()
        assert ar.get(timeout=1) == "through"
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_large_push_and_pull_cross_intact_and_the_database_records_their_size(
    client: Client,
) -> None:
    array = _big()
    pushed = client[0].push({"a": array}, block=False)
    pushed.get(timeout=30)
    pulled = client[0].pull("a", block=False)
    np.testing.assert_array_equal(pulled.get(timeout=30), array)
    push_record = _record(client, pushed.msg_ids[0])
    assert push_record["metadata"]["bulk"] >= array.nbytes
    assert push_record["buffers"] == []  # the controller never held the data
    assert _record(client, pulled.msg_ids[0])["result_metadata"]["bulk"] >= array.nbytes


def test_requests_after_a_large_one_run_after_it_on_the_engine(client: Client) -> None:
    view = client[0]
    view.push({"a": _big(1.0)}, block=False)
    view.push({"a": 5}, block=False)  # small: the relay would deliver it first
    assert view.pull("a", block=False).get(timeout=30) == 5
    view.execute("b = 1", block=False)
    view.push({"b": _big(2.0)}, block=False)
    total = view.apply_async(lambda: float(b.sum()))  # noqa: F821 - defined on the engine
    assert total.get(timeout=30) == float(_big(2.0).sum())


def test_a_large_argument_and_a_large_result_of_apply(client: Client) -> None:
    ar = client[0].apply_async(lambda x: x * 2, _big(3.0))
    np.testing.assert_array_equal(ar.get(timeout=30), _big(3.0) * 2)
    assert ar.metadata["status"] == "ok"


def test_another_client_learns_why_a_large_result_is_not_kept(
    cluster: Cluster, client: Client
) -> None:
    ar = client[0].apply_async(_big, 4.0)
    ar.get(timeout=30)
    _record(client, ar.msg_ids[0])
    with (
        cluster.connect_client() as other,
        pytest.raises(ActorClusterError, match=r"went straight to the client.*--bulk-threshold"),
    ):
        other.get_result(ar.msg_ids[0], block=True)


def test_a_task_with_large_arguments_cannot_be_resubmitted_and_says_why(client: Client) -> None:
    ar = client[0].apply_async(lambda x: len(x), _big())
    assert ar.get(timeout=30) == len(_big())
    _record(client, ar.msg_ids[0])
    with pytest.raises(ActorClusterError, match=r"arguments .* went straight to its engine"):
        client.resubmit(ar.msg_ids)


def test_an_error_with_a_large_argument_comes_back_as_an_error(client: Client) -> None:
    def fail(x: np.ndarray) -> None:
        raise ValueError(f"bad array of {len(x)}")

    with pytest.raises(RemoteError, match="bad array of"):
        client[0].apply_sync(fail, _big())


def test_with_no_threshold_everything_passes_the_controller_and_is_kept() -> None:
    with Cluster(n=1, mode="inprocess", bulk_threshold=0) as rc:
        ar = rc[0].apply_async(lambda x: x + 1, _big())
        np.testing.assert_array_equal(ar.get(timeout=30), _big() + 1)
        record = _record(rc, ar.msg_ids[0])
        assert "bulk" not in record["metadata"] and len(record["buffers"]) > 1
        assert "bulk" not in record["result_metadata"]


def test_requests_for_an_engine_the_client_cannot_reach_go_through_the_controller() -> None:
    # As from a laptop that reaches the controller through a tunnel, but not the engines.
    with Cluster(n=1, mode="inprocess") as rc:
        io = actor_of(rc._io)
        io.nodes[0] = "127.0.0.1:1"  # where nothing listens
        assert rc[0].apply_sync(lambda x: x + 1, 1) == 2
        assert rc[0].apply_sync(lambda x: x + 2, 1) == 3  # straight to the controller now
        assert io._unreachable == {"127.0.0.1:1"}


def _connect(rc: Client) -> None:
    """Connect the client to engine 0: its blocking calls may then leave from their thread."""
    rc[0].apply_sync(os.getpid)
    wait_until(lambda: actor_of(rc._io).connected(0) is not None, 10)


@interactive
def _order() -> str:
    return order  # type: ignore[name-defined]  # noqa: F821 - defined on the engine


def test_a_blocking_call_leaves_from_the_callers_thread(client: Client, engine_gate: Gate) -> None:
    _connect(client)
    view = client[0]
    with ThreadPoolExecutor(1) as pool:
        with io_thread_stuck(client):
            waiting = pool.submit(view.apply_sync, through_gate, engine_gate.path)
            engine_gate.wait_for_task()  # on the engine while the I/O thread is busy
        engine_gate.open()
        assert waiting.result(timeout=30) == "through"
    _record(client, client.history[-1])  # the relay got its copy: the task is recorded
    # it got two (the client's, as the call took a while, and the engine's): counted once
    wait_until(lambda: client.queue_status(0)["queue"] == 0, 10)


def test_a_blocking_call_does_not_overtake_requests_still_in_flight(
    client: Client, engine_gate: Gate
) -> None:
    _connect(client)
    view = client[0]
    with ThreadPoolExecutor(1) as pool:
        pool.submit(view.apply_sync, os.getpid).result(timeout=30)  # its thread connects
        running = view.apply_async(through_gate, engine_gate.path)
        engine_gate.wait_for_task()
        with io_thread_stuck(client):
            view.execute("order = 'first'", block=False)  # waits in the I/O thread
            reading = pool.submit(view.apply_sync, _order)
            wait_until(lambda: len(client.outstanding) == 3, 10)  # the read is submitted
        engine_gate.open()
        assert reading.result(timeout=30) == "first"
    assert running.get(timeout=30) == "through"


def test_results_for_a_client_the_engines_cannot_reach_come_through_the_controller() -> None:
    # As for a laptop behind a NAT: it reaches the engines, they cannot connect back.
    with Cluster(n=1, mode="inprocess") as rc:
        io = actor_of(rc._io)
        closed = threading.Event()

        def stop_listening() -> None:
            assert io.router is not None
            io.router.unbind(io.router.get_string(zmq.LAST_ENDPOINT))
            closed.set()

        rc._io.tell(FdReady(stop_listening))
        assert closed.wait(10)
        balanced = rc.load_balanced_view().apply_async(lambda: "balanced")
        assert balanced.get(timeout=30) == "balanced"  # the scheduler had only its copy
        direct = rc[0].apply_async(lambda: "direct")
        assert direct.get(timeout=30) == "direct"
        assert rc[0].apply_async(lambda: "again").get(timeout=30) == "again"
        rc.abort(targets=0, block=False).get(timeout=30)  # the engine answers on our connection


def test_a_blocking_calls_result_comes_back_to_the_callers_own_socket(client: Client) -> None:
    _connect(client)
    with ThreadPoolExecutor(1) as pool, io_thread_stuck(client):
        call = pool.submit(client[0].apply_sync, lambda x: x * 7, 6)
        assert call.result(timeout=10) == 42  # the I/O thread never saw it
    _record(client, client.history[-1])  # the engine gave the relay both copies


def test_many_quick_blocking_calls_are_each_recorded_once(client: Client) -> None:
    _connect(client)
    for i in range(20):
        assert client[0].apply_sync(abs, -i) == i
    ids = client.history[-20:]
    wait_until(
        lambda: (
            len(client.db_query({"msg_id": {"$in": ids}, "completed": {"$ne": None}}, ["msg_id"]))
            == 20
        ),
        10,
    )
    assert client.queue_status(0)["queue"] == 0  # none is left counted as queued


def test_a_blocking_call_queued_behind_another_clients_task_can_be_aborted(
    cluster: Cluster, client: Client, engine_gate: Gate
) -> None:
    _connect(client)
    with cluster.connect_client() as other, ThreadPoolExecutor(1) as pool:
        running = other[0].apply_async(through_gate, engine_gate.path)
        engine_gate.wait_for_task()
        waiting = pool.submit(client[0].apply_sync, os.getpid)  # unread by the busy engine
        wait_until(lambda: len(client.outstanding) == 1, 10)
        client.abort(list(client.outstanding), block=True)
        with pytest.raises(TaskAborted):  # at once: the engine is still busy
            waiting.result(timeout=30)
        engine_gate.open()
        assert running.get(timeout=30) == "through"
        assert client[0].apply_sync(abs, -3) == 3  # the aborted request, read now, is dropped


def test_a_blocking_call_whose_engine_dies_fails_with_engine_error(engine_gate: Gate) -> None:
    with Cluster(n=1) as rc, ThreadPoolExecutor(1) as pool:
        _connect(rc)
        pid = rc[0].apply_sync(os.getpid)
        call = pool.submit(rc[0].apply_sync, through_gate, engine_gate.path)
        engine_gate.wait_for_task()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineError):
            call.result(timeout=30)
