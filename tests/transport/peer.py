"""A peer process for transport tests: an echo actor listening on loopback.

Run as `python -c 'from tests.transport.peer import main; main()' KEY` (so its message
classes live in this module, not `__main__`); prints its address on stdout, then serves
until its stdin closes or it is killed.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actorcluster.transport import GuardedActor, Message, Session, SocketActor, actor_of


@dataclass(frozen=True, kw_only=True)
class Echo(Message):
    """Ask: answered with `text`."""

    text: str
    data: Any = None


@dataclass(frozen=True, kw_only=True)
class Record(Message):
    """Tell: remembered by the peer."""

    text: str


@dataclass(frozen=True, kw_only=True)
class Recorded(Message):
    """Ask: answered with everything recorded and the counts of dropped messages."""


@dataclass(frozen=True, kw_only=True)
class Stall(Message):
    """Ask: answered only after `seconds` (or when released by Release)."""

    seconds: float


@dataclass(frozen=True, kw_only=True)
class Boom(Message):
    """Ask or tell: the handler raises `ValueError`, or `SystemExit` if `exit`."""

    exit: bool = False


@dataclass(frozen=True, kw_only=True)
class Touch(Message):
    """Tell: create the file `path` (to tell whether a handler ran)."""

    path: str


@dataclass(frozen=True, kw_only=True)
class Quit(Message):
    """Tell: the echo actor stops itself (its process stays up)."""


class EchoActor(SocketActor):
    """Echo, record and misbehave on request."""

    def __init__(self, session: Session, listen: str = "tcp://127.0.0.1:0") -> None:
        super().__init__(session, name="echo", listen=listen)
        self.recorded: list[str] = []
        self._release = threading.Event()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Echo(text=text, data=data):
                return text if data is None else (text, data)
            case Record(text=text):
                self.recorded.append(text)
                return None
            case Recorded():
                return {"recorded": list(self.recorded), "dropped": dict(self.session.dropped)}
            case Stall(seconds=seconds):
                self._release.wait(seconds)
                return "late"
            case Boom(exit=True):
                raise SystemExit(3)
            case Boom():
                raise ValueError("boom on request")
            case Touch(path=path):
                Path(path).touch()
                return None
            case Quit():
                self.stop()
                return None
        return super().on_receive(message)


class Sidekick(GuardedActor):
    """A plain actor hosted by the echo actor's node as `sidekick`."""

    def on_receive(self, message: Any) -> Any:
        match message:
            case Echo(text=text):
                return text
            case Quit():
                self.stop()
        return None


def main() -> None:
    key = sys.argv[1].encode()
    ref = EchoActor.start(Session(key))
    actor_of(ref).host("sidekick", Sidekick.start())
    print(actor_of(ref).address, flush=True)
    sys.stdin.read()
    ref.stop()
    os._exit(0)


if __name__ == "__main__":
    main()
