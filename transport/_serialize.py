"""Serialization of user functions and data.

Data is pickled with the C pickler at protocol 5: numpy arrays and other large buffers
become out-of-band `PickleBuffer`s that travel as frames of their own, without copies.
Functions and classes that cannot be pickled by reference (lambdas, closures, anything
defined in `__main__` or interactively, or marked with `interactive`) are pickled by
value with dill, with only the globals they use. A function sent by value is
interactive where it is loaded: an engine runs it with its namespace as globals.
Unpickling needs nothing but `pickle.loads` (and dill installed).
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dill

__all__ = ["Payload", "deserialize", "interactive", "serialize"]

_INBAND_LIMIT = 64 * 1024
F = TypeVar("F", bound=Callable[..., Any])


def interactive(f: F) -> F:
    """Mark a function to be sent by value and run with the engine's namespace as globals."""
    f.__actorcluster_interactive__ = True  # type: ignore[attr-defined]
    return f


def _by_value(obj: Any) -> bool:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", "")
    return (
        module in (None, "__main__", "__mp_main__")
        or "<lambda>" in qualname
        or "<locals>" in qualname
        or getattr(obj, "__actorcluster_interactive__", False)
    )


def _load_by_value(data: bytes) -> Any:
    """Rebuild a function sent by value; it is interactive: engines run it in their namespace."""
    obj = dill.loads(data)
    if isinstance(obj, types.FunctionType):
        obj.__actorcluster_interactive__ = True  # type: ignore[attr-defined]
    return obj


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType | type) and _by_value(obj):
            # recurse: only the globals the function uses travel, so its module need not
            # be importable where it is loaded
            return _load_by_value, (dill.dumps(obj, protocol=5, recurse=True),)
        return NotImplemented


@dataclass(frozen=True, slots=True)
class Payload:
    """A serialized object: the pickle and its out-of-band buffers (sent as separate frames)."""

    data: bytes
    buffers: tuple[Any, ...] = field(default=())

    @property
    def nbytes(self) -> int:
        """Total size of the pickle and its buffers."""
        return len(self.data) + sum(memoryview(b).nbytes for b in self.buffers)

    def __reduce__(self) -> tuple[Any, ...]:
        # Buffers become PickleBuffers so the enclosing message sends them out of band.
        return Payload, (self.data, tuple(pickle.PickleBuffer(b) for b in self.buffers))


def serialize(obj: Any) -> Payload:
    """Serialize `obj`, keeping large buffers out of band."""
    buffers: list[pickle.PickleBuffer] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes < _INBAND_LIMIT:
            return True
        buffers.append(buf)
        return False

    stream = io.BytesIO()
    _Pickler(stream, protocol=5, buffer_callback=out_of_band).dump(obj)
    return Payload(stream.getvalue(), tuple(buffers))


def deserialize(payload: Payload | tuple[bytes, Sequence[Any]]) -> Any:
    """Rebuild the object of `serialize`."""
    data, buffers = (payload.data, payload.buffers) if isinstance(payload, Payload) else payload
    return pickle.loads(data, buffers=buffers)
