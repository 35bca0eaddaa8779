"""The task scheduler hands out waiting tasks in the order they came, and takes tasks
that clients placed themselves in whatever order their copy, result or return come."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pykka
import pytest
from actorcluster.actors.messages import (
    Apply,
    Bounced,
    EngineAdded,
    EngineDied,
    Hello,
    SubmitTask,
    TaskResult,
    TasksFinished,
)
from actorcluster.actors.scheduler import TaskScheduler
from actorcluster.transport import Message, Session, actor_of, serialize

from tests.conftest import wait_until


class _Hub:
    """Hears what the scheduler tells the Hub."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    def tell(self, message: Any) -> None:
        self.told.append(message)

    def finished(self) -> list[tuple[str, int, str]]:
        return [t for m in list(self.told) if isinstance(m, TasksFinished) for t in m.tasks]


class _Recording(TaskScheduler):
    """A scheduler whose sends to engines and clients are recorded instead of sent."""

    def __init__(self) -> None:
        self.hub_heard = _Hub()
        super().__init__(Session(b"test-key-0123456789"), "127.0.0.1", self.hub_heard, hwm=1)
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


def _task(msg_id: str, targets: tuple[int, ...] | None = None, placed: int = -1) -> SubmitTask:
    request = Apply(msg_id=msg_id, client="", engine=-1, payload=serialize(None))
    return SubmitTask(request=request, targets=targets, placed=placed)


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


def test_a_placed_tasks_result_that_beats_its_copy_counts_once_the_copy_comes(
    scheduler: pykka.ActorRef[Any],
) -> None:
    ok = TaskResult(msg_id="p", engine=0, status="ok", direct=True, placed=True)
    scheduler.tell(ok)  # the engine answered its client and copied us, before the client did
    scheduler.tell(_task("p", placed=0))
    scheduler.tell(_task("q", targets=(0,)))  # engine 0 is free again: q goes there now
    assert _sent_to(scheduler, "engine-0:1") == ["q"]  # and p is not sent anywhere
    hub: _Hub = actor_of(scheduler).hub_heard
    wait_until(lambda: ("p", 0, "ok") in hub.finished())
    assert hub.finished().count(("p", 0, "ok")) == 1


@pytest.mark.parametrize("copy_first", [True, False], ids=["copy-first", "bounce-first"])
def test_a_placed_task_its_busy_engine_sent_back_runs_elsewhere(
    scheduler: pykka.ActorRef[Any], copy_first: bool
) -> None:
    scheduler.tell(_task("long", targets=(0,)))  # engine 0 is full (hwm 1)
    messages = [_task("p", placed=0), Bounced(msg_id="p", engine=0)]
    for message in messages if copy_first else reversed(messages):
        scheduler.tell(message)
    assert _sent_to(scheduler, "engine-1:1") == ["p"]
    assert _sent_to(scheduler, "engine-0:1") == ["long"]
    hub: _Hub = actor_of(scheduler).hub_heard
    if copy_first:  # counted on engine 0, then moved: the Hub is told, not as completed
        wait_until(lambda: ("p", 0, "moved") in hub.finished())


def test_a_placed_task_whose_engine_died_is_placed_by_the_scheduler(
    scheduler: pykka.ActorRef[Any],
) -> None:
    scheduler.tell(EngineDied(id=0, uuid="u0", reason="killed"))
    scheduler.tell(_task("p", placed=0))
    assert _sent_to(scheduler, "engine-1:1") == ["p"]
