"""A pykka actor that survives the failure of any single message.

pykka stops an actor whose handler raises while handling a `tell`, and stops every actor in
the process on a `BaseException`. A cluster actor must outlive bad input and user code, so
`GuardedActor` runs its own loop: an exception from a `tell` is logged and the actor goes
on; an exception from an `ask` goes to the asker (a `BaseException` wrapped in a
`RemoteError`, so it cannot unwind the asking thread); nothing stops the other actors.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

import pykka

from actorcluster.error import ActorClusterError, RemoteError

__all__ = ["GuardedActor", "Later", "as_remote_error"]

logger = logging.getLogger(__name__)


def as_remote_error(error: BaseException) -> BaseException:
    """Return `error` fit to travel: our own errors as they are, others as `RemoteError`."""
    if isinstance(error, ActorClusterError):
        return error
    text = "".join(traceback.format_exception(error))
    return RemoteError(type(error).__name__, str(error), text)


Settle = Callable[[Any, BaseException | None], None]
_BRIEF = 300  # characters of a message a log line shows (a batch of tasks may be megabytes)


def _brief(message: Any) -> str:
    text = repr(message)
    return text if len(text) <= _BRIEF else f"{text[:_BRIEF]}... ({len(text)} characters)"


class Later:
    """What a handler returns for an ask it answers later (a deferred answer): the actor
    keeps it and calls `answer` or `fail` once, from its own thread. The asker, local or
    across the network, gets that answer."""

    __slots__ = ("_outcome", "_settle")

    def __init__(self) -> None:
        self._outcome: tuple[Any, BaseException | None] | None = None
        self._settle: Settle | None = None

    @property
    def done(self) -> bool:
        """Whether it was answered."""
        return self._outcome is not None

    def answer(self, value: Any) -> None:
        """Answer the ask with `value` (only the first answer counts)."""
        self._set((value, None))

    def fail(self, error: BaseException) -> None:
        """Answer the ask with `error`, raised at the asker."""
        self._set((None, as_remote_error(error)))

    def bind(self, settle: Settle) -> None:
        """Deliver the answer with `settle(value, error)` (the actor's machinery does)."""
        self._settle = settle
        self._deliver()

    def _set(self, outcome: tuple[Any, BaseException | None]) -> None:
        if self._outcome is None:
            self._outcome = outcome
            self._deliver()

    def _deliver(self) -> None:
        if self._outcome is not None and self._settle is not None:
            self._settle(*self._outcome)


def _settle_future(future: pykka.Future[Any]) -> Settle:
    def settle(value: Any, error: BaseException | None) -> None:
        if error is None:
            future.set(value)
        else:
            future.set_exception((type(error), error, None))

    return settle


class GuardedActor(pykka.ThreadingActor):
    """A `ThreadingActor` that no single message can stop; callbacks run when it stops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_callbacks: list[Callable[[], None]] = []
        self._stop_lock = threading.Lock()
        self._stopped_for_good = False

    def add_stop_callback(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once the actor has stopped (at once if it already has)."""
        with self._stop_lock:
            if not self._stopped_for_good:
                self._stop_callbacks.append(callback)
                return
        callback()

    def _actor_loop(self) -> None:
        try:
            super()._actor_loop()
        finally:
            self._after_stop()
            with self._stop_lock:
                self._stopped_for_good = True
                callbacks, self._stop_callbacks = self._stop_callbacks, []
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    logger.exception("stop callback of %s failed", self)

    def _after_stop(self) -> None:
        """Release resources once the loop ended (the actor's thread)."""

    def _actor_loop_running(self) -> None:
        while not self.actor_stopped.is_set():
            envelope = self.actor_inbox.get()
            try:
                response = self._handle_receive(envelope.message)
            except Exception as e:
                if envelope.reply_to is not None:
                    envelope.reply_to.set_exception((type(e), e, e.__traceback__))
                else:
                    logger.exception("%s failed on %s; it goes on", self, _brief(envelope.message))
            except BaseException as e:  # noqa: BLE001 - contained, see the module docstring
                logger.error("%s: %r raised while handling %s", self, e, _brief(envelope.message))
                if envelope.reply_to is not None:
                    wrapped = as_remote_error(e)
                    envelope.reply_to.set_exception((type(wrapped), wrapped, None))
            else:
                if envelope.reply_to is None:
                    continue
                if isinstance(response, Later):
                    response.bind(_settle_future(envelope.reply_to))
                else:
                    envelope.reply_to.set(response)
