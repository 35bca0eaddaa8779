"""Two processes, one actor model: tell and ask an actor in another process by address.

Starts a child process hosting a `Counter` actor on 127.0.0.1, then from this process:
tells it increments, asks it for the total, watches it, and sees `Terminated` when the
child is killed. Run: python examples/remote_actors.py
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from dataclasses import dataclass
from typing import Any

from actorcluster.transport import Message, RemoteRef, Session, SocketActor, Terminated, actor_of


@dataclass(frozen=True, kw_only=True)
class Add(Message):
    n: int


@dataclass(frozen=True, kw_only=True)
class Total(Message):
    pass


class Counter(SocketActor):
    """Keeps a running total; answers `Total`."""

    def __init__(self, session: Session) -> None:
        super().__init__(session, name="counter", listen="tcp://127.0.0.1:0")
        self.total = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case Add(n=n):
                self.total += n
            case Total():
                return self.total
        return None


class Watcher(SocketActor):
    """Watches an address and reports `Terminated` on a queue."""

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


def serve(key: bytes, addresses: mp.Queue) -> None:  # type: ignore[type-arg]
    ref = Counter.start(Session(key))
    addresses.put(actor_of(ref).address)
    ref.actor_stopped.wait()


def main() -> None:
    key = b"example-key"
    spawn = mp.get_context("spawn")
    addresses = spawn.Queue()
    child = spawn.Process(target=serve, args=(key, addresses))
    child.start()
    address = addresses.get(timeout=30)
    session = Session(key)
    counter = RemoteRef(address, session)
    for n in range(1, 101):
        counter.tell(Add(n=n))
    print(f"{address}: total after 100 tells = {counter.ask(Total(), block=True, timeout=10)}")

    seen: queue.Queue[Terminated] = queue.Queue()
    watcher = Watcher.start(session, seen)
    watcher.ask(address, timeout=10)
    child.kill()
    terminated = seen.get(timeout=10)
    print(f"watcher saw: {terminated.address} terminated ({terminated.reason})")
    watcher.stop()
    child.join(timeout=10)


if __name__ == "__main__":
    main()
