"""The kernel of an engine: a namespace, and requests run against it with output captured.

Runs in the engine's executor thread only; the engine actor never runs user code.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

from actorcluster.actors.messages import (
    Apply,
    Clear,
    Execute,
    Pull,
    Push,
    Queued,
    TaskResult,
    answers_client,
)
from actorcluster.transport import bind, deserialize, namespace_of_thread, serialize

from actorcluster.error import RemoteError, UnknownTask

__all__ = ["Kernel"]


class _ThreadStream(io.TextIOBase):
    """Stands in for sys.stdout/stderr: writes go to the calling thread's capture, if any.

    `contextlib.redirect_stdout` swaps a process-wide object, so engines running in
    threads of one process would capture each other's output (and the user's).
    """

    def __init__(self, original: Any) -> None:
        self.original = original
        self.local = threading.local()

    def write(self, text: str) -> int:
        capture = getattr(self.local, "capture", None)
        return int((capture if capture is not None else self.original).write(text))

    def flush(self) -> None:
        capture = getattr(self.local, "capture", None)
        (capture if capture is not None else self.original).flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


_install_lock = threading.Lock()


def _thread_stream(name: str) -> _ThreadStream:
    """Return sys.<name>, made a `_ThreadStream` if it is not one yet."""
    with _install_lock:
        stream = getattr(sys, name)
        if not isinstance(stream, _ThreadStream):
            stream = _ThreadStream(stream)
            setattr(sys, name, stream)
        return stream


@contextlib.contextmanager
def _captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Capture what this thread prints to stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    streams = _thread_stream("stdout"), _thread_stream("stderr")
    streams[0].local.capture, streams[1].local.capture = out, err
    try:
        yield out, err
    finally:
        streams[0].local.capture = streams[1].local.capture = None


class Kernel:
    """Run requests against one persistent namespace.

    Args:
        engine_info: identifies the engine in errors (`engine_id`, `engine_uuid`, ...).
    """

    def __init__(self, engine_info: dict[str, Any]) -> None:
        self.engine_info = engine_info
        self.namespace: dict[str, Any] = {}
        self.clear()

    def clear(self) -> None:
        """Reset the namespace to a fresh `__main__`-like module dict."""
        self.namespace.clear()
        self.namespace.update({"__name__": "__main__", "__builtins__": __builtins__})

    def run(self, request: Queued) -> TaskResult:
        """Run `request`; any exception, `SystemExit` included, becomes an error result."""
        started = time.time()
        status, value, error = "ok", None, None
        with _captured() as (out, err):
            try:
                value = self._dispatch(request)
            except BaseException as e:  # noqa: BLE001 - user code may raise anything
                status = "error"
                error = RemoteError(
                    type(e).__name__,
                    str(e),
                    "".join(traceback.format_exception(e)),
                    dict(self.engine_info),
                )
        return TaskResult(
            msg_id=request.msg_id,
            client=request.client,
            direct=answers_client(request, status),
            placed=isinstance(request, Apply) and request.placed,
            engine=self.engine_info.get("engine_id", -1),
            status=status,
            value=value,
            error=error,
            metadata={
                "started": started,
                "completed": time.time(),
                "stdout": out.getvalue(),
                "stderr": err.getvalue(),
                "engine_uuid": self.engine_info.get("engine_uuid"),
            },
        )

    def _dispatch(self, request: Queued) -> Any:
        match request:
            case Apply(payload=payload):
                fn, args, kwargs = deserialize(payload)
                fn = self._bind(fn)
                namespace_of_thread.namespace = self.namespace  # for functions called by maps
                try:
                    return serialize(fn(*args, **kwargs))
                finally:
                    namespace_of_thread.namespace = None
            case Clear():
                self.clear()
                return None
            case Execute(code=code):
                exec(compile(code, "<execute>", "exec"), self.namespace)
                return None
            case Push(payload=payload):
                self.namespace.update(deserialize(payload))
                return None
            case Pull(names=names, single=single):
                missing = [n for n in names if n not in self.namespace]
                if missing:
                    raise NameError(f"name {missing[0]!r} is not defined on this engine")
                values = [self.namespace[n] for n in names]
                return serialize(values[0] if single else values)
        raise UnknownTask(f"unknown request {type(request).__name__}")

    def _bind(self, fn: Any) -> Any:
        return bind(fn, self.namespace)
