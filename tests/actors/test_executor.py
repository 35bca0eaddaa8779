"""The executor runs what it reads in order; a task its client placed here while another
runs goes back to the scheduler instead of waiting behind it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from actorcluster.actors.executor import Executor
from actorcluster.actors.kernel import Kernel
from actorcluster.actors.messages import Apply, Bounced, TaskResult
from actorcluster.transport import Message, Port, Session, SocketActor, actor_of, serialize

from tests.conftest import Gate, through_gate, wait_until

KEY = b"test-key-0123456789"


class _Scheduler(SocketActor):
    """Stands in for the scheduler: keeps what reaches it."""

    def __init__(self) -> None:
        super().__init__(Session(KEY), name="scheduler", listen="tcp://127.0.0.1:0")
        self.heard: list[Message] = []

    def on_receive(self, message: Any) -> Any:
        self.heard.append(message)
        return None


@pytest.fixture
def scheduler() -> Iterator[pykka.ActorRef[Any]]:
    ref = _Scheduler.start()
    try:
        yield ref
    finally:
        ref.stop(block=True, timeout=5)


@pytest.fixture
def executor(scheduler: pykka.ActorRef[Any]) -> Iterator[Executor]:
    address = actor_of(scheduler).address
    executor = Executor(Session(KEY), address, Kernel({"engine_id": 0, "engine_uuid": "u0"}))
    thread = threading.Thread(target=executor.run, daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.stop()
        thread.join(10)
        assert not thread.is_alive()


def _apply(msg_id: str, scheduler: pykka.ActorRef[Any], call: Any, placed: bool = False) -> Apply:
    fn, *args = call
    return Apply(
        msg_id=msg_id,
        client="",
        engine=0,
        payload=serialize((fn, tuple(args), {})),
        reply=actor_of(scheduler).address,
        placed=placed,
    )


def _heard(scheduler: pykka.ActorRef[Any]) -> list[tuple[str, str]]:
    """(kind, msg_id) of what the scheduler heard: results and returned tasks."""
    heard = list(actor_of(scheduler).heard)
    return [(type(m).__name__, m.msg_id) for m in heard if isinstance(m, TaskResult | Bounced)]


@pytest.fixture
def port() -> Iterator[Port]:
    """A port of the test's thread, to send requests to the executor's socket."""
    port = Port(Session(KEY))
    try:
        yield port
    finally:
        port.close()


def _busy(executor: Executor, scheduler: pykka.ActorRef[Any], gate: Gate, msg_id: str) -> None:
    """Have the executor run a task that waits at `gate`; return once it runs."""
    executor.submit(_apply(msg_id, scheduler, (through_gate, gate.path)))
    gate.wait_for_task()


def test_a_placed_task_read_while_others_wait_goes_back_to_the_scheduler(
    executor: Executor, scheduler: pykka.ActorRef[Any], engine_gate: Gate, port: Port
) -> None:
    _busy(executor, scheduler, engine_gate, "g1")
    # one wire message: read together once g1 is done, g2 queued before p is seen
    port.post(executor.node, "executor", _apply("g2", scheduler, (abs, -2)))
    port.post(executor.node, "executor", _apply("p", scheduler, (abs, -3), placed=True))
    port.flush()
    engine_gate.open()
    wait_until(lambda: len(_heard(scheduler)) == 3, 10)
    assert sorted(_heard(scheduler)) == [
        ("Bounced", "p"),
        ("TaskResult", "g1"),
        ("TaskResult", "g2"),
    ]
    _busy(executor, scheduler, engine_gate, "g3")
    assert not executor.reclaim("p")  # sent back once: should it come again, it runs
    engine_gate.open()


def test_a_placed_task_unread_while_another_runs_is_reclaimed_and_never_runs_here(
    executor: Executor, scheduler: pykka.ActorRef[Any], engine_gate: Gate, port: Port
) -> None:
    _busy(executor, scheduler, engine_gate, "g1")
    port.post(executor.node, "executor", _apply("p", scheduler, (abs, -3), placed=True))
    port.flush()
    assert executor.reclaim("p")  # g1 runs: p would wait behind it
    port.post(executor.node, "executor", _apply("after", scheduler, (abs, -4)))
    port.flush()
    engine_gate.open()
    wait_until(lambda: ("TaskResult", "after") in _heard(scheduler), 10)
    assert ("TaskResult", "p") not in _heard(scheduler)  # read before `after`: dropped
    assert not executor.reclaim("after")  # idle now, or ran it: nothing to take back
