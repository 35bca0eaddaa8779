"""What every view shares: its client, targets and flags, and the apply family."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from actorcluster.asyncresult import AsyncResult
    from actorcluster.client import Client, Targets

__all__ = ["View"]


class View:
    """The base of DirectView and LoadBalancedView; subclasses define `_apply` and `flags`."""

    flags: ClassVar[tuple[str, ...]] = ("block", "targets")

    def __init__(self, client: Client, targets: Targets, block: bool | None = None) -> None:
        self.client = client
        self.targets = targets
        self.block = client.block if block is None else block

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.targets!r}>"

    def set_flags(self, **flags: Any) -> None:
        """Set flags (see `flags`)."""
        for key, value in flags.items():
            if key not in self.flags:
                raise KeyError(
                    f"unknown flag {key!r} ({type(self).__name__} flags: {', '.join(self.flags)})"
                )
            self._check_flag(key, value)
            setattr(self, key, value)

    def _check_flag(self, key: str, value: Any) -> None:
        """Raise if `value` is not allowed for flag `key`."""

    @contextlib.contextmanager
    def temp_flags(self, **flags: Any) -> Iterator[View]:
        """Set flags for the duration of a `with` block."""
        saved = {key: getattr(self, key) for key in flags}
        self.set_flags(**flags)
        try:
            yield self
        finally:
            self.set_flags(**saved)

    def _finish(self, ar: AsyncResult, block: bool | None) -> Any:
        return ar.get() if (self.block if block is None else block) else ar

    def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `f(*args, **kwargs)`; block or not per `self.block`."""
        return self._apply(f, args, kwargs, None)

    def apply_sync(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `f(*args, **kwargs)` and return the result."""
        return self._apply(f, args, kwargs, True)

    def apply_async(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """Run `f(*args, **kwargs)`; return an AsyncResult at once."""
        result: AsyncResult = self._apply(f, args, kwargs, False)
        return result

    def _apply(
        self,
        f: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        block: bool | None,
    ) -> Any:
        raise NotImplementedError
