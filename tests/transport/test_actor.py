"""SocketActor and GuardedActor in one process: pykka's contract, timers, containment."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from actorcluster.transport import (
    GuardedActor,
    Message,
    RemoteRef,
    Session,
    SocketActor,
    Terminated,
    actor_of,
)

from actorcluster.error import RemoteError, UnknownActor
from tests.transport.peer import Boom, Echo, EchoActor, Record, Recorded


@dataclass(frozen=True, kw_only=True)
class Later(Message):
    delay: float
    token: str


class TimerActor(SocketActor):
    def __init__(self, session: Session, fired: queue.Queue[str]) -> None:
        super().__init__(session, name="timer")
        self.fired = fired

    def on_receive(self, message: Any) -> Any:
        match message:
            case Later(delay=delay, token=token) if delay > 0:
                self.call_later(delay, Later(delay=0, token=token))
            case Later(token=token):
                self.fired.put(token)
        return None


class Watcher(SocketActor):
    """Records every `Terminated` it is told."""

    heartbeat_period = 0.1

    def __init__(self, session: Session, seen: queue.Queue[Terminated]) -> None:
        super().__init__(session, name="watcher", listen="tcp://127.0.0.1:0")
        self.seen = seen

    def on_receive(self, message: Any) -> Any:
        match message:
            case Terminated():
                self.seen.put(message)
            case str() as address:
                self.watch(address)
        return None


class Plain(GuardedActor):
    def on_receive(self, message: Any) -> Any:
        match message:
            case Boom(exit=True):
                raise SystemExit(1)
            case Boom():
                raise ValueError("boom")
            case Echo(text=text):
                return text
        return None


@pytest.fixture
def session() -> Session:
    return Session(b"k")


def test_inbox_keeps_pykkas_contract_for_tell_ask_and_stop(session: Session) -> None:
    ref = EchoActor.start(session)
    ref.tell(Record(text="a"))
    assert ref.ask(Echo(text="hi"), timeout=5) == "hi"
    assert ref.ask(Recorded(), timeout=5)["recorded"] == ["a"]
    ref.stop(timeout=5)
    assert not ref.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        ref.ask(Echo(text="late"), timeout=5)


def test_the_same_messages_reach_the_same_handler_locally_and_by_address(session: Session) -> None:
    ref = EchoActor.start(session)
    remote = RemoteRef(actor_of(ref).address, session)
    remote.tell(Record(text="by address"))
    ref.tell(Record(text="by ref"))
    assert remote.ask(Echo(text="x"), block=True, timeout=5) == "x"
    assert ref.ask(Recorded(), timeout=5)["recorded"] == ["by address", "by ref"]


def test_timers_arrive_as_messages(session: Session) -> None:
    fired: queue.Queue[str] = queue.Queue()
    ref = TimerActor.start(session, fired)
    ref.tell(Later(delay=0.05, token="second"))
    ref.tell(Later(delay=0.01, token="first"))
    assert [fired.get(timeout=5), fired.get(timeout=5)] == ["first", "second"]


def test_a_put_from_another_thread_wakes_a_sleeping_actor(session: Session) -> None:
    ref = EchoActor.start(session)
    results: list[str] = []

    def ask_many() -> None:
        results.extend(ref.ask(Echo(text=str(i)), timeout=5) for i in range(200))

    threads = [threading.Thread(target=ask_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(results) == 800


def test_exceptions_in_tells_do_not_stop_the_actor() -> None:
    ref = Plain.start()
    ref.tell(Boom())
    ref.tell(Boom(exit=True))
    assert ref.ask(Echo(text="alive"), timeout=5) == "alive"


def test_an_exception_in_an_ask_goes_to_the_asker_and_the_actor_lives() -> None:
    ref = Plain.start()
    with pytest.raises(ValueError, match="boom"):
        ref.ask(Boom(), timeout=5)
    assert ref.ask(Echo(text="alive"), timeout=5) == "alive"


def test_a_base_exception_in_one_actor_stops_no_other() -> None:
    first, second = Plain.start(), Plain.start()
    with pytest.raises(RemoteError, match="SystemExit"):
        first.ask(Boom(exit=True), timeout=5)
    assert first.is_alive() and second.is_alive()
    assert second.ask(Echo(text="alive"), timeout=5) == "alive"


def test_a_hosted_actor_is_reachable_by_name_and_unknown_names_are_refused(
    session: Session,
) -> None:
    host = EchoActor.start(session)
    plain = Plain.start()
    actor_of(host).host("plain", plain)
    node = actor_of(host).node
    assert RemoteRef(f"actor://{node}/plain", session).ask(Echo(text="hi"), block=True) == "hi"
    with pytest.raises(UnknownActor, match="'nobody'"):
        RemoteRef(f"actor://{node}/nobody", session).ask(Echo(text="hi"), block=True)


def test_watching_a_local_actor_reports_its_stop(session: Session) -> None:
    seen: queue.Queue[Terminated] = queue.Queue()
    watcher = Watcher.start(session, seen)
    plain = Plain.start()
    actor_of(watcher).host("plain", plain)
    address = f"actor://{actor_of(watcher).node}/plain"
    watcher.ask(address, timeout=5)
    plain.stop()
    terminated = seen.get(timeout=5)
    assert terminated.address == address and terminated.reason == "stopped"
