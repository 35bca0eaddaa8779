"""Errors raised by actorcluster.

Every error derives from `ActorClusterError`, and also from the closest builtin where the
meaning overlaps, so `except TimeoutError` or `except KeyError` work as expected::

    ActorClusterError
    ├── RemoteError                 an exception raised on the other side, with its traceback
    ├── ConnectionFileError (ValueError)   a connection file is unsafe or malformed
    ├── AskTimeout (TimeoutError)   an ask got no reply within its timeout
    ├── UnknownActor (LookupError)  no actor of that name at that address
    ├── ActorStopped                the actor stopped before it answered
    └── NodeUnreachable (ConnectionError)  the node of an actor went away

`TimeoutError` is the builtin, exported here for the spec's spelling
`actorcluster.error.TimeoutError`.
"""

from __future__ import annotations

import builtins

__all__ = [
    "ActorClusterError",
    "ActorStopped",
    "AskTimeout",
    "ConnectionFileError",
    "NodeUnreachable",
    "RemoteError",
    "TimeoutError",
    "UnknownActor",
]

TimeoutError = builtins.TimeoutError


class ActorClusterError(Exception):
    """Base of every actorcluster error."""


class RemoteError(ActorClusterError):
    """An exception raised on another actor or engine.

    Attributes:
        ename: name of the remote exception class.
        evalue: its message.
        traceback: the formatted remote traceback.
        engine_info: where it ran (engine id, uuid, address), when known.
    """

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: str = "",
        engine_info: dict[str, object] | None = None,
    ) -> None:
        super().__init__(ename, evalue, traceback, engine_info)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_info = engine_info or {}

    def __str__(self) -> str:
        where = self.engine_info.get("engine_id")
        prefix = f"[engine {where}] " if where is not None else ""
        return f"{prefix}{self.ename}({self.evalue})"

    def render_traceback(self) -> str:
        """Return the remote traceback text, or the short form when there is none."""
        return self.traceback or str(self)


class ConnectionFileError(ActorClusterError, ValueError):
    """A connection file is unsafe (readable by others) or malformed."""


class AskTimeout(ActorClusterError, builtins.TimeoutError):
    """An ask got no reply within its timeout."""


class UnknownActor(ActorClusterError, LookupError):
    """No actor of that name at that address."""


class ActorStopped(ActorClusterError):
    """The actor stopped before it answered."""


class NodeUnreachable(ActorClusterError, ConnectionError):
    """The node hosting an actor went away or stopped answering."""
