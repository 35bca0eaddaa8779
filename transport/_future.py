"""The future of an ask: resolved by its reply (or error), waited on by whoever asked."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pykka

from actorcluster.error import AskTimeout

__all__ = ["Driver", "ReplyFuture"]

logger = logging.getLogger(__name__)

# reads the asking thread's port while `get` waits (a plain thread has nobody else to)
Driver = Callable[["ReplyFuture", float | None], None]


class ReplyFuture(pykka.Future[Any]):
    """The future of an ask: `get(timeout)` returns the reply or raises its error.

    When the ask was made on a plain thread, `get` drives that thread's port to receive
    the reply; from an actor's port, the actor's inbox receives it.
    """

    def __init__(self, description: str, driver: Driver | None = None) -> None:
        super().__init__()
        self.description = description
        self._driver = driver
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[ReplyFuture], None]] = []
        self._lock = threading.Lock()
        # held until resolved: a waiter blocks on it (cheaper than an Event per ask)
        self._gate = threading.Lock()
        self._gate.acquire()

    def add_done_callback(self, callback: Callable[[ReplyFuture], None]) -> None:
        """Call `callback(self)` once resolved, in the resolving thread (at once if done)."""
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        callback(self)

    def _resolve(self, value: Any, error: BaseException | None) -> None:
        with self._lock:
            if self._done:
                return
            self._value, self._error = value, error
            self._done = True
            callbacks, self._callbacks = self._callbacks, []
        self._gate.release()
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("callback of %s failed", self.description)

    def done(self) -> bool:
        """Whether the reply (or an error) has arrived."""
        return self._done

    def get(self, *, timeout: float | None = None) -> Any:
        """Return the reply, waiting at most `timeout` seconds.

        Raises:
            AskTimeout: no reply within `timeout`.
            Exception: the error the ask failed with (`RemoteError`, `UnknownActor`, ...).
        """
        if not self._done:
            wait = -1.0 if timeout is None else max(timeout, 0.0)
            if self._driver is not None:
                self._driver(self, timeout)
                if not self._done:
                    wait = 0.0  # the driver has waited `timeout` already
            if not self._gate.acquire(timeout=wait):
                raise AskTimeout(f"no reply from {self.description} within {timeout} s")
            self._gate.release()  # let any other waiter through
        if self._error is not None:
            raise self._error
        return self._value

    def set(self, value: Any = None) -> None:
        self._resolve(value, None)

    def set_exception(self, exc_info: Any = None) -> None:
        error = exc_info[1] if isinstance(exc_info, tuple) else exc_info
        self.fail(error)

    def fail(self, error: BaseException) -> None:
        """Resolve the future with `error`."""
        self._resolve(None, error)
