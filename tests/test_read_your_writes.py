"""Read your writes, for everyone: once a client holds a task's result, every question
to the controller that follows (`result_status`, `get_result`, `db_query`, `queue_status`,
`purge_results`, `resubmit`, `hub_history`), from it or from another client, reflects it,
with no wait or retry in the client (the copies of requests and results reach the
controller late by design; the question waits for what its asker has seen)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from actorcluster import Client
from tests.conftest import MODES, cluster_client

ROUNDS = 1000


@pytest.fixture(scope="module", params=MODES)
def cluster(request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client of a cluster of two engines, in-process or in processes."""
    yield from cluster_client(request.param, 2)


@pytest.fixture
def cpu_hog() -> Iterator[None]:
    """Two processes that keep both cores busy, stopped by pid at the end."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            os.kill(hog.pid, signal.SIGKILL)
            hog.wait(timeout=10)


def _rounds(rc: Client, kind: str, rounds: int, *, blocking: bool = False) -> None:
    other = Client(info=rc.info)
    try:
        view = rc[0] if kind == "direct" else rc.load_balanced_view()
        previous = purged = None
        for i in range(rounds):
            if blocking:  # the fast paths: asked of the executor, or placed on an idle engine
                assert view.apply_sync(abs, -i) == i
                m = rc.history[-1]
            else:
                ar = view.apply_async(abs, -i)
                assert ar.get(timeout=10) == i
                m = ar.msg_ids[0]
            assert rc.result_status([m]) == {"completed": [m], "pending": []}, f"round {i}"
            asker = other if i % 2 else rc  # another client: it never held the result
            assert asker.result_status([m]) == {"completed": [m], "pending": []}, f"round {i}"
            assert other.get_result(m).get(timeout=0) == i, f"round {i}"
            if i % 10 == 0:  # (verbose: every completed msg_id of the engine, a growing list)
                status = asker.queue_status(verbose=True)[rc.metadata[m]["engine_id"]]
                assert m not in status["queue"] + status["tasks"], f"round {i}"
                assert m in status["completed"], f"round {i}"
            records = asker.db_query({"msg_id": m}, ["completed", "result_content"])
            assert len(records) == 1 and records[0]["completed"] is not None, f"round {i}"
            if previous is not None:
                other.purge_results([previous])
                purged = previous
            assert rc.resubmit([m]).get(timeout=10) == [i]
            previous = m
        history = other.hub_history()
        assert m in history and purged not in history
    finally:
        other.close()


@pytest.mark.parametrize("kind", ["direct", "balanced"])
def test_every_question_after_a_result_reflects_it(cluster: Client, kind: str) -> None:
    _rounds(cluster, kind, ROUNDS)


@pytest.mark.parametrize("kind", ["direct", "balanced"])
def test_every_question_after_a_blocking_calls_result_reflects_it(
    cluster: Client, kind: str
) -> None:
    """The same for `apply_sync`, whose requests and results take the fast paths."""
    _rounds(cluster, kind, ROUNDS // 2, blocking=True)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["direct", "balanced"])
def test_every_question_after_a_result_reflects_it_under_a_cpu_hog(
    cluster: Client, cpu_hog: None, kind: str
) -> None:
    _rounds(cluster, kind, ROUNDS // 4)
