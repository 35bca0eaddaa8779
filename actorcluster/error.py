"""Errors raised by actorcluster.

Every error derives from `ActorClusterError`, and also from the closest builtin where the
meaning overlaps, so `except TimeoutError` or `except KeyError` work as expected::

    ActorClusterError
    ├── RemoteError                  an exception raised on an engine, with its traceback
    │   └── CompositeError           several engines raised (`elist`, `raise_exception(i)`)
    ├── EngineError                  the engine running a task died
    ├── TaskAborted                  the task was aborted before it ran
    ├── TaskTimeout (TimeoutError)   the task did not finish in time
    │   └── DependencyTimeout        its dependencies were not met in time
    ├── UnmetDependency              raised by user code: run me elsewhere
    ├── ImpossibleDependency         the dependencies can never be met
    │   └── InvalidDependency        a dependency names an unknown task
    ├── NoEnginesRegistered          there is no engine to run on
    ├── UnknownTask (KeyError)       no task with that msg_id
    ├── ConnectionFileError (ValueError)   a connection file is unsafe or malformed
    ├── AskTimeout (TimeoutError)    an ask got no reply within its timeout
    ├── UnknownActor (LookupError)   no actor of that name at that address
    ├── ActorStopped                 the actor stopped before it answered
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
    "CompositeError",
    "ConnectionFileError",
    "DependencyTimeout",
    "EngineError",
    "ImpossibleDependency",
    "InvalidDependency",
    "NoEnginesRegistered",
    "NodeUnreachable",
    "RemoteError",
    "TaskAborted",
    "TaskTimeout",
    "TimeoutError",
    "UnknownActor",
    "UnknownTask",
    "UnmetDependency",
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


class CompositeError(RemoteError):
    """Errors raised on several engines at once.

    Attributes:
        elist: the `RemoteError` of each failed engine, in target order.
    """

    shown = 4  # tracebacks printed in str(); the rest are counted

    def __init__(self, message: str, elist: list[RemoteError]) -> None:
        super().__init__("CompositeError", message)
        self.args = (message, elist)
        self.elist = list(elist)

    def __str__(self) -> str:
        lines = [f"{self.evalue}:"]
        for error in self.elist[: self.shown]:
            lines.append(f"  {error}")
        if len(self.elist) > self.shown:
            lines.append(f"  ... {len(self.elist) - self.shown} more exceptions ...")
        return "\n".join(lines)

    def print_tracebacks(self, excid: int | None = None) -> None:
        """Print the remote traceback of one engine's error, or of all of them."""
        errors = self.elist if excid is None else [self.elist[excid]]
        for error in errors:
            print(error.render_traceback())

    def raise_exception(self, excid: int = 0) -> None:
        """Raise the `excid`-th engine's error itself."""
        raise self.elist[excid]


class EngineError(ActorClusterError):
    """The engine running a task died (or left) before answering."""


class TaskAborted(ActorClusterError):
    """The task was aborted before it ran."""


class TaskTimeout(ActorClusterError, builtins.TimeoutError):
    """The task did not finish (or start) within its timeout."""


class DependencyTimeout(TaskTimeout):
    """The task's dependencies were not met within its timeout."""


class UnmetDependency(ActorClusterError):
    """Raised by user code to ask the scheduler to run the task on another engine."""


class ImpossibleDependency(UnmetDependency):
    """The task's dependencies can never be met."""


class InvalidDependency(ImpossibleDependency):
    """A dependency names a task that does not exist."""


class NoEnginesRegistered(ActorClusterError):
    """There is no engine registered to run on."""


class UnknownTask(ActorClusterError, KeyError):
    """No task with that msg_id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


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
