"""The base of every message that may cross a socket, and the registry of their names.

A message class is a frozen dataclass deriving from `Message`::

    @dataclass(frozen=True, kw_only=True)
    class SubmitTask(Message):
        msg_id: str

Its class name is its wire `msg_type`. A message whose type is not registered here is
dropped before its content is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

_registry: dict[str, type[Message]] = {}


class Message:
    """Base class of framework messages; subclasses register themselves by class name."""

    __slots__ = ()
    registry: ClassVar[dict[str, type[Message]]] = _registry

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        known = _registry.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise TypeError(
                f"message type {name!r} is defined twice ({known.__module__} and "
                f"{cls.__module__}); give one of them another name"
            )
        # A class decorated again (e.g. dataclass(slots=True)) replaces its first version.
        _registry[name] = cls


def message_class(msg_type: str) -> type[Message] | None:
    """Return the registered message class for a wire `msg_type`, or None."""
    return _registry.get(msg_type)


@dataclass(frozen=True, kw_only=True)
class Reply(Message):
    """The answer to an ask: a value, or an error raised while handling it."""

    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, kw_only=True)
class Ping(Message):
    """A liveness probe between nodes; answered with `Pong`."""


@dataclass(frozen=True, kw_only=True)
class Pong(Message):
    """The answer to `Ping`."""


@dataclass(frozen=True, kw_only=True)
class Watch(Message):
    """Ask to receive `Terminated` when the actor `name` on this node stops."""

    name: str
    watcher: str


@dataclass(frozen=True, kw_only=True)
class Unwatch(Message):
    """Stop a watch made with `Watch`."""

    name: str
    watcher: str


@dataclass(frozen=True, kw_only=True)
class Terminated(Message):
    """The watched actor at `address` stopped, or its node stopped answering."""

    address: str
    reason: str
