"""The load-balanced view and the task scheduler: schemes, limits, retries, engine churn."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
from actorcluster.actors.schemes import SCHEMES
from actorcluster.transport import ThreadPort, serialize

from actorcluster import AsyncResult, Client, Cluster, LoadBalancedView
from actorcluster.error import DependencyTimeout, EngineError, RemoteError, TaskAborted
from tests.conftest import (
    Gate,
    actor_stuck,
    executors_of,
    gated_pid,
    io_thread_stuck,
    through_gate,
    wait_until,
)


def test_map_equals_the_serial_map_in_every_chunking(rc: Client) -> None:
    lview = rc.load_balanced_view()
    serial = [x**10 for x in range(32)]
    assert lview.map_sync(lambda x: x**10, range(32)) == serial
    assert lview.map_sync(lambda x: x**10, range(32), chunksize=5) == serial
    assert sorted(lview.map_async(lambda x: x**10, range(32), ordered=False)) == sorted(serial)
    assert list(lview.imap(lambda x, y: x + y, range(5), range(5))) == [0, 2, 4, 6, 8]


def test_apply_and_the_parallel_decorator(rc: Client) -> None:
    lview = rc.load_balanced_view()
    assert isinstance(lview, LoadBalancedView)
    assert lview.apply_sync(lambda x: x + 1, 1) == 2
    ar = lview.apply_async(lambda: "async")
    assert ar.get(10) == "async"
    assert ar.engine_id in (0, 1)

    @lview.parallel(block=True)
    def f(x: int) -> float:
        return 10.0 * x**4

    assert f.map(range(8)) == [10.0 * x**4 for x in range(8)]
    assert len(lview) == 2


def test_flags_are_checked(rc: Client) -> None:
    lview = rc.load_balanced_view()
    with lview.temp_flags(retries=2, block=True):
        assert lview.retries == 2
        assert lview.apply(lambda: 1) == 1
    assert lview.retries == 0
    with pytest.raises(KeyError, match="unknown flag 'color'"):
        lview.set_flags(color="red")
    with pytest.raises(ValueError, match="retries must be an int >= 0"):
        lview.set_flags(retries=-1)
    with pytest.raises(ValueError, match="chunksize must be an int >= 1"):
        lview.map(lambda x: x, range(3), chunksize=0)


def test_targets_limit_the_engines(rc: Client) -> None:
    lview = rc.load_balanced_view(targets=[1])
    ars = [lview.apply_async(lambda: 0) for _ in range(20)]
    rc.wait(ars, timeout=10)
    assert {ar.engine_id for ar in ars} == {1}


def test_a_failed_task_with_retries_runs_again_on_another_engine(rc: Client) -> None:
    rc[0]["bad"], rc[1]["bad"] = True, False

    def flaky() -> str:
        if bad:  # type: ignore[name-defined]  # noqa: F821
            raise ValueError("this engine is bad")
        return "ok"

    def flaky_item(_: int) -> str:
        return "ok" if not bad else str(1 / 0)  # type: ignore[name-defined]  # noqa: F821

    lview = rc.load_balanced_view()
    lview.retries = 1
    assert lview.map_sync(flaky_item, range(20)) == ["ok"] * 20
    lview.retries = 0
    results = [lview.apply_async(flaky) for _ in range(20)]
    rc.wait(results, timeout=10)
    assert any(not r.successful() for r in results)
    with pytest.raises(RemoteError, match="this engine is bad"):
        next(r for r in results if not r.successful()).get(0)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_each_scheme_distributes_work_over_the_engines(scheme: str) -> None:
    with Cluster(n=2, mode="inprocess", scheme=scheme) as rc:
        lview = rc.load_balanced_view()
        ars = [lview.apply_async(lambda: __import__("time").sleep(0.002)) for _ in range(60)]
        assert rc.wait(ars, timeout=30)
        used = [ar.engine_id for ar in ars]
        assert used.count(0) > 5 and used.count(1) > 5, used


def test_leastload_keeps_a_slow_engine_from_hoarding_work(engine_gate: Gate) -> None:
    with Cluster(n=2, mode="inprocess", hwm=1) as rc:
        rc[0]["gate"], rc[1]["gate"] = engine_gate.path, ""  # engine 0 is slow: held there

        def work() -> None:
            if gate:  # type: ignore[name-defined]  # noqa: F821
                through_gate(gate)  # type: ignore[name-defined]  # noqa: F821 - the engine's

        lview = rc.load_balanced_view()
        ars = [lview.apply_async(work) for _ in range(40)]
        engine_gate.wait_for_task()
        wait_until(lambda: sum(ar.ready() for ar in ars) == len(ars) - 1, 30)
        engine_gate.open()  # the slow engine finishes the one task it held
        assert rc.wait(ars, timeout=30)
        used = [ar.engine_id for ar in ars]
        assert used.count(0) <= 5 < used.count(1), used


def test_tasks_wait_for_an_engine_and_run_once_one_joins() -> None:
    cluster = Cluster(n=0, mode="inprocess")
    with cluster as rc:
        ar = rc.load_balanced_view().apply_async(lambda: "ran")
        assert not ar.wait(0.1)
        assert rc.queue_status()["unassigned"] in (0, 1)
        cluster.add_engines(1)
        assert ar.get(10) == "ran"


@pytest.mark.slow
def test_a_killed_engines_task_completes_elsewhere_with_retries(engine_gate: Gate) -> None:
    with Cluster(n=2, hwm=1) as rc:
        pids = {i: info["pid"] for i, info in rc.hub_status()["engines"].items()}
        lview = rc.load_balanced_view()
        lview.retries = 1
        ar = lview.apply_async(gated_pid, engine_gate.path)
        engine_gate.wait_for_task()
        wait_until(
            lambda: any(s["tasks"] for k, s in rc.queue_status().items() if k != "unassigned"),
            timeout=10,
        )
        victim = next(k for k, s in rc.queue_status().items() if k != "unassigned" and s["tasks"])
        os.kill(pids[victim], signal.SIGKILL)
        survivor = pids[1 - victim]
        engine_gate.wait_for_task()  # the retry, on the survivor
        engine_gate.open()
        assert ar.get(timeout=20) == survivor
        lview.retries = 0
        ar = lview.apply_async(through_gate, engine_gate.path)  # held there until the kill
        engine_gate.wait_for_task()  # running on the survivor (a queue count may be stale)
        os.kill(survivor, signal.SIGKILL)
        with pytest.raises(EngineError, match="died while running task"):
            ar.get(timeout=10)


@pytest.mark.slow
def test_twenty_thousand_tasks_none_lost_or_duplicated(prc: Client) -> None:
    lview = prc.load_balanced_view()
    ars = [lview.apply_async(lambda i=i: i) for i in range(20_000)]
    assert prc.wait(ars, timeout=120)
    assert [ar.get(0) for ar in ars] == list(range(20_000))
    assert len({m for ar in ars for m in ar.msg_ids}) == 20_000


@pytest.mark.parametrize("hwm", [1, 4], ids=["waiting-in-scheduler", "queued-on-engine"])
def test_abort_of_waiting_load_balanced_tasks_gives_task_aborted(
    hwm: int, engine_gate: Gate
) -> None:
    with Cluster(n=1, mode="inprocess", hwm=hwm) as rc:
        lview = rc.load_balanced_view()
        busy = lview.apply_async(through_gate, engine_gate.path)
        engine_gate.wait_for_task()  # the engine is busy until the gate opens
        waiting = [lview.apply_async(lambda i=i: i) for i in range(4)]
        lview.abort(waiting[:2])
        for ar in waiting[:2]:
            with pytest.raises(TaskAborted, match=ar.msg_ids[0]):
                ar.get(10)
        engine_gate.open()
        assert [ar.get(10) for ar in waiting[2:]] == [2, 3]
        assert busy.get(10) == "through"


def test_a_task_that_finds_no_engine_in_time_fails_with_dependency_timeout() -> None:
    with Cluster(n=0, mode="inprocess") as rc:
        lview = rc.load_balanced_view()
        lview.timeout = 0.2
        ar = lview.apply_async(lambda: "never")
        with pytest.raises(DependencyTimeout, match=r"found no engine to run on within 0.2 s"):
            ar.get(10)
        assert isinstance(ar.exception(), TimeoutError)
    with pytest.raises(ValueError, match="timeout must be"):
        lview.set_flags(timeout=-1)


def test_the_scheduler_can_run_in_a_process_of_its_own() -> None:
    cluster = Cluster(n=2, mode="inprocess", scheduler_process=True)
    with cluster as rc:
        scheduler = cluster._controller.scheduler_process
        assert scheduler is not None and scheduler.poll() is None
        lview = rc.load_balanced_view()
        assert lview.map_sync(lambda x: x * 2, range(20)) == [x * 2 for x in range(20)]
        wait_until(
            lambda: (
                sum(s["completed"] for k, s in rc.queue_status().items() if k != "unassigned") >= 20
            )
        )
    assert scheduler.wait(timeout=10) == 0


def test_a_blocking_balanced_call_is_answered_on_the_callers_own_socket() -> None:
    with Cluster(n=2, mode="inprocess") as rc, ThreadPoolExecutor(1) as pool:
        lview = rc.load_balanced_view()
        port = pool.submit(ThreadPort.of_thread, rc.session).result(timeout=10)
        for _ in range(50):  # its first calls connect the thread to every engine's executor
            assert pool.submit(lview.apply_sync, abs, -1).result(timeout=10) == 1
            executors = executors_of(rc)
            if len(executors) == 2 and all(port.connected(e) for e in executors):
                break
        with io_thread_stuck(rc):  # so no result can come through the I/O thread
            assert pool.submit(lview.apply_sync, abs, -7).result(timeout=10) == 7
        with pytest.raises(RemoteError, match="ZeroDivisionError"):  # a failure still comes
            lview.apply_sync(lambda: 1 / 0)  # through the scheduler and the I/O thread


def test_an_answer_that_comes_after_its_waiter_left_still_completes_the_result() -> None:
    with Cluster(n=1, mode="inprocess") as rc, ThreadPoolExecutor(1) as pool:
        lview = rc.load_balanced_view()
        port = pool.submit(ThreadPort.of_thread, rc.session).result(timeout=10)
        for _ in range(50):  # until the thread is connected to the executor (see above)
            assert pool.submit(lview.apply_sync, abs, -1).result(timeout=10) == 1
            if executors_of(rc) and all(port.connected(e) for e in executors_of(rc)):
                break

        # a blocking call whose wait is interrupted
        ar = pool.submit(_blocking_call, rc, lview, -5).result(timeout=10)
        wait_until(ar.done, 10)  # nobody drives that thread's socket: the sweep reads it
        assert ar.get(0) == 5


def _completed(rc: Client) -> dict[int, int]:
    """Tasks each engine completed, as the Hub counts them."""
    return {k: s["completed"] for k, s in rc.queue_status().items() if k != "unassigned"}


def _settled(rc: Client) -> dict[int, int]:
    """`_completed` once the Hub has heard of every task so far (none left running)."""
    wait_until(
        lambda: all(
            s["queue"] == s["tasks"] == 0 for k, s in rc.queue_status().items() if k != "unassigned"
        ),
        10,
    )
    return _completed(rc)


def _blocking_call(rc: Client, lview: LoadBalancedView, x: int) -> AsyncResult:
    """`lview.apply_sync(abs, x)`, the test waiting on its result for a bounded time."""
    ar: AsyncResult = rc._submit(
        lview._tasks([serialize((abs, (x,), {}))]), single=True, blocking=True
    )
    return ar


def _placing(rc: Client, lview: LoadBalancedView) -> int:
    """Make blocking balanced calls from this thread until the next one can go straight to
    an engine (this thread is connected to every executor); return that engine."""
    port = ThreadPort.of_thread(rc.session)
    for _ in range(50):
        assert lview.apply_sync(abs, -1) == 1
        executors = executors_of(rc)
        if len(executors) == len(rc.ids) and all(port.connected(e) for e in executors):
            break
    assert rc._idle is not None
    return rc._idle


def test_a_blocking_balanced_call_goes_to_the_engine_that_ran_the_last_one_directly() -> None:
    cluster = Cluster(n=2, mode="inprocess")
    with cluster as rc:
        lview = rc.load_balanced_view()
        engine = _placing(rc, lview)
        completed = _settled(rc)
        with actor_stuck(cluster._controller.scheduler_ref):  # the scheduler hears nothing
            assert _blocking_call(rc, lview, -3).get(timeout=5) == 3
        msg_id = rc.history[-1]
        assert rc.metadata[msg_id]["engine_id"] == engine
        # then it has the copy: counted once, on that engine
        wait_until(lambda: _completed(rc) == {**completed, engine: completed[engine] + 1}, 10)
        (record,) = rc.db_query({"msg_id": msg_id}, keys=["engine_uuid", "completed"])
        assert record["engine_uuid"] == rc._engines[engine] and record["completed"] is not None


def test_a_blocking_balanced_call_to_an_engine_now_busy_runs_on_another(
    engine_gate: Gate,
) -> None:
    cluster = Cluster(n=2, mode="inprocess")
    with cluster as rc:
        lview = rc.load_balanced_view()
        busy = _placing(rc, lview)
        completed = _settled(rc)
        other_client = cluster.connect_client()
        gated = other_client[busy].apply_async(through_gate, engine_gate.path)
        engine_gate.wait_for_task()
        # sent back by `busy`, it runs on the other one at once
        assert _blocking_call(rc, lview, -4).get(timeout=5) == 4
        other = rc.metadata[rc.history[-1]]["engine_id"]
        assert other != busy
        engine_gate.open()
        gated.get(timeout=10)
        # the moved task counted once, where it ran: nothing of it left on `busy`
        assert _settled(rc) == {busy: completed[busy] + 1, other: completed[other] + 1}


def test_blocking_calls_of_clients_that_place_on_the_same_engines_are_each_counted_once() -> None:
    # Three clients' calls go straight to the engine each saw idle last; they collide,
    # engines send tasks back, the scheduler places them, maybe on the same engine again.
    cluster = Cluster(n=2)
    with cluster as rc:
        clients = [rc, cluster.connect_client(), cluster.connect_client()]
        before = _settled(rc)

        def calls(client: Client) -> list[int]:
            lview = client.load_balanced_view()
            return [lview.apply_sync(abs, -i) for i in range(150)]

        with ThreadPoolExecutor(3) as pool:
            for results in pool.map(calls, clients, timeout=120):
                assert results == list(range(150))
        wait_until(lambda: sum(_completed(rc).values()) == sum(before.values()) + 450, 10)
        assert sum(_settled(rc).values()) == sum(before.values()) + 450  # none counted twice
        done = rc.db_query({"completed": {"$ne": None}, "queue": "task"}, keys=["msg_id"])
        assert len({r["msg_id"] for r in done}) == len(done) >= 450


@pytest.mark.slow
def test_a_placed_blocking_calls_engine_killed_under_it_runs_it_elsewhere_with_retries(
    engine_gate: Gate,
) -> None:
    with Cluster(n=2) as rc, ThreadPoolExecutor(1) as pool:
        pids = {i: info["pid"] for i, info in rc.hub_status()["engines"].items()}
        lview = rc.load_balanced_view()
        lview.retries = 1
        engine = pool.submit(_placing, rc, lview).result(timeout=60)
        call = pool.submit(lview.apply_sync, gated_pid, engine_gate.path)  # placed on `engine`
        engine_gate.wait_for_task()
        os.kill(pids[engine], signal.SIGKILL)
        engine_gate.wait_for_task()  # the retry, on the survivor
        engine_gate.open()
        assert call.result(timeout=30) == pids[1 - engine]
