"""AsyncResult and AsyncMapResult: futures of requests sent to engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from actorcluster.error import AskTimeout, CompositeError

if TYPE_CHECKING:
    from actorcluster.client import Client

__all__ = ["AsyncHubResult", "AsyncMapResult", "AsyncResult", "Metadata"]

_KEYS = (
    "msg_id",
    "submitted",
    "started",
    "completed",
    "received",
    "engine_uuid",
    "engine_id",
    "follow",
    "after",
    "status",
    "pyin",
    "pyout",
    "pyerr",
    "stdout",
    "stderr",
)


_EMPTY = {**dict.fromkeys(_KEYS), "stdout": "", "stderr": ""}
_DRIVE_SLICE = 0.05  # seconds a `get` reads answers before it looks at the result again
_MOMENT = 0.002  # seconds a driven result may take before its `unanswered` action runs


class Metadata(dict[str, Any]):
    """The metadata of one request, with attribute access and a fixed set of keys."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(_EMPTY)
        self.update(*args, **kwargs)

    @classmethod
    def new(cls, msg_id: str, submitted: datetime, engine_id: int) -> Metadata:
        """The metadata of a request just submitted (the client's fast path)."""
        md = cls.__new__(cls)
        dict.update(md, _EMPTY, msg_id=msg_id, submitted=submitted, engine_id=engine_id)
        return md

    def __getattr__(self, key: str) -> Any:
        if key in self:
            return self[key]
        raise AttributeError(key)

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in self:
            raise KeyError(f"{key!r} is not a metadata key (keys: {', '.join(self)})")
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        values = dict(*args, **kwargs)
        unknown = values.keys() - self.keys()
        if unknown:
            raise KeyError(
                f"{sorted(unknown)[0]!r} is not a metadata key (keys: {', '.join(self)})"
            )
        dict.update(self, values)


def _date(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


class AsyncResult(Future[Any]):
    """The result of requests to one or more engines, as a `concurrent.futures.Future`.

    `get(timeout)` returns the value (a list over engines, or one value for a single
    target) or raises: the engine's `RemoteError` for one engine, a `CompositeError`
    for several, the builtin `TimeoutError` when not ready in time.
    """

    _reuse = False  # True: wait on the futures the client already has for these msg_ids
    _asks: list[Any] | None = None  # answers `get` reads on its thread's port (`drive`)
    _unanswered: Callable[[], Any] | None = None

    def __init__(
        self,
        client: Client,
        msg_ids: Sequence[str],
        *,
        fname: str = "unknown",
        single: bool = False,
    ) -> None:
        super().__init__()
        self._client = client
        self.msg_ids = list(msg_ids)
        self._fname = fname
        self._single = single
        self._remaining = len(self.msg_ids)
        self._lock = threading.Lock()
        futures = client._futures
        if not self.msg_ids:
            self.set_result([])
        elif single and len(self.msg_ids) == 1 and type(self) is AsyncResult:
            futures[self.msg_ids[0]] = self  # one request, one value: be its future
        else:
            for msg_id in self.msg_ids:
                child: Future[Any] | None = None
                if self._reuse:
                    child = client._known_future(msg_id)
                if child is None:
                    child = futures[msg_id] = Future()
                child.add_done_callback(self._child_done)

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<{type(self).__name__}: {self._fname} ({len(self.msg_ids)} requests, {state})>"

    def __len__(self) -> int:
        return len(self.msg_ids)

    def _child_done(self, _: Future[Any]) -> None:
        with self._lock:
            self._remaining -= 1
            if self._remaining:
                return
        values, errors = self._collect()
        if errors:
            if self._single and len(errors) == 1:
                self.set_exception(errors[0])
            else:
                self.set_exception(
                    CompositeError(
                        f"one or more exceptions from call to method: {self._fname}", errors
                    )
                )
        else:
            self.set_result(self._reconstruct(values))

    def _collect(self) -> tuple[list[Any], list[Any]]:
        values, errors = [], []
        for msg_id in self.msg_ids:
            child = self._client._task_future(msg_id)
            error = child.exception()
            if error is not None:
                errors.append(error)
            else:
                values.append(child.result())
        return values, errors

    def _reconstruct(self, values: list[Any]) -> Any:
        return values[0] if self._single else values

    # -- the spec's interface ---------------------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """Wait for and return the result; a negative or None timeout waits forever.

        Raises:
            TimeoutError: not ready within `timeout` seconds.
        """
        if timeout is not None and timeout < 0:
            timeout = None
        if self._asks:
            self._drive_asks(timeout)
        return self.result(timeout)

    def drive(self, asked: Any) -> None:
        """Have `get` read the answer to `asked` (a `ReplyFuture` of the calling thread's
        port) while it waits: the answer completes this result."""
        if self._asks is None:
            self._asks = []
        self._asks.append(asked)

    def on_unanswered(self, unanswered: Callable[[], Any]) -> None:
        """Run `unanswered` (once) if this result is not done within a moment of the first
        `get`: a placed blocking call then asks its engine to send it back if busy."""
        self._unanswered = unanswered

    def _drive_asks(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        unanswered, self._unanswered = self._unanswered, None
        try:
            if unanswered is not None:
                self._read_answers(min(_MOMENT, timeout if timeout is not None else _MOMENT))
        finally:
            if unanswered is not None and not self.done():
                unanswered()
        self._read_answers(None if deadline is None else deadline - time.monotonic())

    def _read_answers(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for asked in self._asks or ():
            while not asked.done() and not self.done():
                wait = _DRIVE_SLICE
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return
                try:
                    asked.get(timeout=wait)
                except AskTimeout:
                    continue  # not yet: look again (the result may also come another way)
                except Exception:  # noqa: BLE001 - no answer will come: the relay's word will
                    break

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until ready (or `timeout`); return whether it is ready."""
        if timeout is not None and timeout < 0:
            timeout = None
        try:
            self.exception(timeout)
        except TimeoutError:
            return False
        return True

    def ready(self) -> bool:
        """Whether every request has finished."""
        return self.done()

    def successful(self) -> bool:
        """Whether it finished without an error (False while pending)."""
        return self.done() and not self.cancelled() and self.exception() is None

    def abort(self) -> None:
        """Abort the requests still queued on their engines."""
        self._client.abort(self.msg_ids)

    @property
    def metadata(self) -> Metadata | list[Metadata]:
        """The metadata of each request (one for a single target)."""
        found = [self._client.metadata[m] for m in self.msg_ids]
        return found[0] if self._single else found

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_") or key not in _KEYS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")
        values = [self._client.metadata[m][key] for m in self.msg_ids]
        return values[0] if self._single else values

    @property
    def elapsed(self) -> float:
        """Seconds since the first request was submitted (until the last finished, if done)."""
        submitted = [self._client.metadata[m]["submitted"] for m in self.msg_ids]
        start: float = min(s for s in submitted if s is not None).timestamp()
        end = self._last("received") if self.done() else None
        return (end or time.time()) - start

    @property
    def wall_time(self) -> float:
        """Seconds from the first submission to the last completion."""
        submitted = min(self._client.metadata[m]["submitted"] for m in self.msg_ids)
        completed = self._last("completed")
        return 0.0 if completed is None else completed - submitted.timestamp()

    @property
    def serial_time(self) -> float:
        """Seconds the engines spent running these requests, added up."""
        total = 0.0
        for m in self.msg_ids:
            md = self._client.metadata[m]
            if md["started"] is not None and md["completed"] is not None:
                total += (md["completed"] - md["started"]).total_seconds()
        return total

    def _last(self, key: str) -> float | None:
        stamps = [self._client.metadata[m][key] for m in self.msg_ids]
        known = [s.timestamp() for s in stamps if s is not None]
        return max(known) if known else None

    def wait_interactive(self, interval: float = 0.1, timeout: float | None = None) -> None:
        """Wait with a progress bar of finished requests."""
        from tqdm.auto import tqdm

        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        with tqdm(total=len(self.msg_ids), unit="tasks", desc=self._fname) as bar:
            while not self.wait(interval):
                bar.n = sum(self._client._task_future(m).done() for m in self.msg_ids)
                bar.refresh()
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"{self!r} not ready within {timeout} s")
            bar.n = len(self.msg_ids)
            bar.refresh()


class AsyncHubResult(AsyncResult):
    """Results from the task database: of tasks any client submitted, waited for while
    pending (`Client.get_result`, `Client.resubmit`)."""

    _reuse = True


class AsyncMapResult(AsyncResult):
    """The result of a map split over engines; iterates over elements as they arrive."""

    def __init__(
        self,
        client: Client,
        msg_ids: Sequence[str],
        *,
        fname: str = "map",
        join: Callable[[list[Any]], Any] | None = None,
        ordered: bool = True,
    ) -> None:
        self._join = join or _concatenate
        self._ordered = ordered
        super().__init__(client, msg_ids, fname=fname)

    def _reconstruct(self, values: list[Any]) -> Any:
        return self._join(values)

    def __iter__(self) -> Iterator[Any]:
        """Yield results as their chunks finish (in order unless `ordered=False`)."""
        futures = [self._client._task_future(m) for m in self.msg_ids]
        if self._ordered:
            for future in futures:
                yield from self._chunk(future)
        else:
            from concurrent.futures import as_completed

            for future in as_completed(futures):
                yield from self._chunk(future)

    def _chunk(self, future: Future[Any]) -> Iterator[Any]:
        error = future.exception()
        if error is not None:
            raise error
        yield from future.result()


def _concatenate(chunks: list[Any]) -> Any:
    """Join the partial results of a map or gather: arrays end to end, else a flat list."""
    if chunks and all(hasattr(c, "__array__") and hasattr(c, "shape") and c.shape for c in chunks):
        import numpy as np

        return np.concatenate(chunks)
    joined: list[Any] = []
    for chunk in chunks:
        joined.extend(chunk)
    return joined
