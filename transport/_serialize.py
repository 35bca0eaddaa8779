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
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import dill

__all__ = [
    "Payload",
    "bind",
    "call_serialized",
    "deserialize",
    "interactive",
    "namespace_of_thread",
    "serialize",
]

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


class _Cache:
    """A small bounded mapping, oldest entries dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any) -> None:
        self.items[key] = value
        if len(self.items) > self.size:
            self.items.popitem(last=False)


# dill costs ~0.25 ms per function: keep the bytes of functions whose bytes cannot change,
# and the functions rebuilt from bytes seen before.
_dumped = _Cache(256)
_loaded = _Cache(256)
_names = _Cache(256)


def _stable(fn: types.FunctionType) -> bool:
    """Whether `fn`'s pickle depends on its code alone: no closure, defaults, attributes,
    and no global it uses other than modules (which travel by reference)."""
    if fn.__closure__ or fn.__defaults__ or fn.__kwdefaults__:
        return False
    if set(fn.__dict__) - {"__actorcluster_interactive__"}:
        return False
    names = _names.get(fn.__code__)
    if names is None:
        names = frozenset(global_names(fn.__code__))
        _names.put(fn.__code__, names)
    defined = fn.__globals__
    return all(isinstance(defined[name], types.ModuleType) for name in names if name in defined)


def global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= global_names(const)
    return names


def _dump_by_value(obj: Any) -> bytes:
    # recurse: only the globals the function uses travel, so its module need not be
    # importable where it is loaded
    if isinstance(obj, types.FunctionType) and _stable(obj):
        key = (obj.__code__, obj.__module__)
        data: bytes | None = _dumped.get(key)
        if data is None:
            data = dill.dumps(obj, protocol=5, recurse=True)
            _dumped.put(key, data)
        return data
    return dill.dumps(obj, protocol=5, recurse=True)  # type: ignore[no-any-return]


def _load_by_value(data: bytes) -> Any:
    """Rebuild a function sent by value; it is interactive: engines run it in their namespace."""
    obj = _loaded.get(data)
    if obj is None:
        obj = dill.loads(data)
        if isinstance(obj, types.FunctionType):
            obj.__actorcluster_interactive__ = True  # type: ignore[attr-defined]
            if _stable(obj):
                _loaded.put(data, obj)
    return obj


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType | type) and _by_value(obj):
            return _load_by_value, (_dump_by_value(obj),)
        return NotImplemented


@dataclass(frozen=True, slots=True)
class Payload:
    """A serialized object: the pickle and its out-of-band buffers (sent as separate frames).

    `digests` are the signed digests its buffers arrived with, when a relay received it
    without reading them; sending it on reuses them instead of hashing the buffers again.
    """

    data: bytes
    buffers: tuple[Any, ...] = field(default=())
    digests: tuple[str, ...] = field(default=(), compare=False)

    @property
    def nbytes(self) -> int:
        """Total size of the pickle and its buffers."""
        if not self.buffers:
            return len(self.data)
        return len(self.data) + sum(memoryview(b).nbytes for b in self.buffers)

    def __reduce__(self) -> tuple[Any, ...]:
        if not self.buffers:  # most payloads (a call, a small value): the hot path
            return _payload, (self.data,)
        # Buffers become PickleBuffers so the enclosing message sends them out of band.
        wrapped = tuple(pickle.PickleBuffer(b) for b in self.buffers)
        known = outgoing_digests.get()
        if known is not None and self.digests:
            for buffer, value in zip(wrapped, self.digests, strict=True):
                known[id(buffer)] = (buffer, value)  # the buffer is kept alive: its id stays unique
        return _payload, (self.data, wrapped)


# Set by the session around pickling and unpickling messages: the digests of buffers.
outgoing_digests: ContextVar[dict[int, tuple[Any, str]] | None] = ContextVar(
    "outgoing", default=None
)
incoming_digests: ContextVar[dict[int, str] | None] = ContextVar("incoming", default=None)


def _payload(data: bytes, buffers: tuple[Any, ...] = ()) -> Payload:
    if not buffers:
        return Payload(data)
    known = incoming_digests.get()
    if known:
        digests = tuple(known.get(id(b), "") for b in buffers)
        if all(digests):
            return Payload(data, buffers, digests)
    return Payload(data, buffers)


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


_functions = _Cache(64)
namespace_of_thread = threading.local()  # the namespace of the task this thread runs, if any


def bind(fn: Any, namespace: dict[str, Any]) -> Any:
    """Give an interactive function (from `__main__`, sent by value, or marked) `namespace`
    as its globals, adding to it the globals the function brought along that it lacks."""
    if not isinstance(fn, types.FunctionType):
        return fn
    interactive = getattr(fn, "__actorcluster_interactive__", False)
    if not interactive and fn.__module__ not in ("__main__", "__mp_main__", None):
        return fn
    defined = fn.__globals__
    for name in global_names(fn.__code__):
        if name not in namespace and name in defined:
            namespace[name] = defined[name]
    bound = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    bound.__kwdefaults__ = fn.__kwdefaults__
    return bound


def call_serialized(data: bytes, *args: Any) -> Any:
    """Call the function pickled in `data` (rebuilt once per distinct `data`) with `args`.

    Lets a map send its function's bytes once per chunk instead of pickling it again. An
    interactive function runs with the namespace of the task that calls it.
    """
    fn = _functions.get(data)
    if fn is None:
        fn = pickle.loads(data)
        _functions.put(data, fn)
    namespace = getattr(namespace_of_thread, "namespace", None)
    if namespace is not None:
        fn = bind(fn, namespace)
    return fn(*args)


def deserialize(payload: Payload | tuple[bytes, Sequence[Any]]) -> Any:
    """Rebuild the object of `serialize`."""
    data, buffers = (payload.data, payload.buffers) if isinstance(payload, Payload) else payload
    return pickle.loads(data, buffers=buffers)
