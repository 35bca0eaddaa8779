"""The task scheduler hands out waiting tasks in the order they came."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from actorcluster.actors.messages import Apply, EngineAdded, Hello, SubmitTask, TaskResult
from actorcluster.actors.scheduler import TaskScheduler
from actorcluster.transport import Message, Session, actor_of, serialize


class _Nobody:
    def tell(self, message: Any) -> None:
        pass


class _Recording(TaskScheduler):
    """A scheduler whose sends to engines and clients are recorded instead of sent."""

    def __init__(self) -> None:
        super().__init__(Session(b"test-key-0123456789"), "127.0.0.1", _Nobody(), hwm=1)
        self.sent: list[tuple[str, Message]] = []

    def send_to(self, node: str, name: str, message: Message) -> None:
        self.sent.append((node, message))


@pytest.fixture
def scheduler() -> Iterator[pykka.ActorRef[Any]]:
    ref = _Recording.start()
    try:
        ref.tell(EngineAdded(id=0, uuid="u0", node="engine-0:1"))
        ref.tell(EngineAdded(id=1, uuid="u1", node="engine-1:1"))
        yield ref
    finally:
        ref.stop(block=True, timeout=5)


def _task(msg_id: str, targets: tuple[int, ...] | None = None) -> SubmitTask:
    request = Apply(msg_id=msg_id, client="", engine=-1, payload=serialize(None))
    return SubmitTask(request=request, targets=targets)


def _sent_to(ref: pykka.ActorRef[Any], node: str) -> list[str]:
    ref.ask(Hello(uuid="sync"), timeout=5)  # everything told before is handled
    recording: _Recording = actor_of(ref)
    return [m.msg_id for n, m in recording.sent if n == node and isinstance(m, Apply)]


def test_tasks_waiting_for_a_full_engine_go_in_the_order_they_came(
    scheduler: pykka.ActorRef[Any],
) -> None:
    for i in range(4):
        scheduler.tell(_task(f"t{i}", targets=(0,)))
    scheduler.tell(_task("free"))  # behind them, but for any engine: engine 1 has room
    assert _sent_to(scheduler, "engine-0:1") == ["t0"]  # one at a time (hwm 1)
    assert _sent_to(scheduler, "engine-1:1") == ["free"]
    for i in range(3):
        scheduler.tell(TaskResult(msg_id=f"t{i}", engine=0, status="ok"))
    assert _sent_to(scheduler, "engine-0:1") == ["t0", "t1", "t2", "t3"]
