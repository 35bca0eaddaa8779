"""Abort touches only the requests it names or the queue it names, and loses nothing.

Each case runs many times on a one-engine cluster, in-process and with an engine process,
direct and load-balanced: the race between an abort and a running task's result is lost
only now and then when it is lost at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actorcluster import Client
from actorcluster.error import TaskAborted
from tests.conftest import MODES, Gate, cluster_client, through_gate

ROUNDS = 200


@pytest.fixture(scope="module", params=MODES)
def one_engine(request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client of a cluster of one engine, in-process or in its own process."""
    yield from cluster_client(request.param, 1)


def _view(rc: Client, kind: str) -> object:
    return rc[0] if kind == "direct" else rc.load_balanced_view(targets=[0])


@pytest.mark.parametrize("kind", ["direct", "balanced"])
def test_an_abort_of_queued_requests_never_loses_the_running_ones_result(
    one_engine: Client, engine_gate: Gate, kind: str
) -> None:
    """The queued ones answer TaskAborted; the running one's result arrives within 1 s of
    its end (balanced: the abort of a task queued behind it does not hold it back)."""
    view = _view(one_engine, kind)
    for i in range(ROUNDS):
        # sent together: the queued ones are there when the running one starts
        running = view.apply_async(through_gate, engine_gate.path)  # type: ignore[attr-defined]
        queued = [view.apply_async(abs, -n) for n in range(1 + i % 3)]  # type: ignore[attr-defined]
        engine_gate.wait_for_task()
        one_engine.abort(queued, block=True)
        for ar in queued:
            with pytest.raises(TaskAborted, match=ar.msg_ids[0]):
                ar.get(timeout=10)
        engine_gate.open()
        assert running.get(timeout=1) == "through", f"round {i}"
        assert running.metadata["completed"] is not None


@pytest.mark.parametrize("kind", ["direct", "balanced"])
def test_an_abort_of_everything_touches_no_later_request(one_engine: Client, kind: str) -> None:
    """An abort of all queued requests with nothing queued: the next blocking call runs."""
    view = _view(one_engine, kind)
    for i in range(ROUNDS):
        one_engine.abort(targets=0 if kind == "direct" else None, block=True)
        assert view.apply_sync(abs, -i) == i  # type: ignore[attr-defined]


def test_an_abort_of_everything_spares_the_running_request_and_aborts_the_queue(
    one_engine: Client, engine_gate: Gate
) -> None:
    for i in range(20):
        running = one_engine[0].apply_async(through_gate, engine_gate.path)
        queued = one_engine[0].apply_async(abs, -1)
        engine_gate.wait_for_task()
        one_engine.abort(targets=0, block=True)
        with pytest.raises(TaskAborted):
            queued.get(timeout=10)
        engine_gate.open()
        assert running.get(timeout=1) == "through", f"round {i}"
        assert one_engine[0].apply_sync(abs, -i) == i
