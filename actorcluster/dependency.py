"""Dependencies of load-balanced tasks.

Functional dependencies run on the engine before the task: `@require` (modules that must
import), `@depend` and `dependent` (a check function). When they fail, the engine raises
`UnmetDependency` and the scheduler tries another engine, never the same one twice and
without using up retries; unmet on every allowed engine is an `ImpossibleDependency`.

Graph dependencies (`Dependency`) name other tasks: `check` tells whether a task may run
given which tasks completed and which failed, `unreachable` whether it never can.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable
from typing import Any

from actorcluster.actors.messages import DependencySpec
from actorcluster.error import UnmetDependency
from actorcluster.transport import bind, namespace_of_thread

__all__ = ["Dependency", "depend", "dependent", "require"]


class Dependency(set[str]):
    """A set of msg_ids a task waits for.

    Args:
        dependencies: msg_ids, AsyncResults, or other Dependencies.
        all: wait for all of them (True) or for any one (False).
        success: a task that succeeded counts.
        failure: a task that failed counts.
    """

    def __init__(
        self,
        dependencies: Iterable[Any] = (),
        all: bool = True,
        success: bool = True,
        failure: bool = False,
    ) -> None:
        ids: set[str] = set()
        for dep in dependencies:
            if isinstance(dep, str):
                ids.add(dep)
            elif hasattr(dep, "msg_ids"):
                ids.update(dep.msg_ids)
            elif isinstance(dep, set | list | tuple):
                ids.update(dep)
            else:
                raise TypeError(f"a dependency must be a msg_id or an AsyncResult, not {dep!r}")
        super().__init__(ids)
        self.all, self.success, self.failure = all, success, failure
        if not (success or failure):
            raise ValueError("a Dependency needs success=True, failure=True, or both")

    def spec(self) -> DependencySpec:
        """The plain form that travels with a task."""
        return DependencySpec(
            ids=frozenset(self), all=self.all, success=self.success, failure=self.failure
        )

    def check(self, completed: set[str], failed: set[str]) -> bool:
        """Whether the task may run, given the msg_ids that completed and that failed."""
        return self.spec().check(completed, failed)

    def unreachable(self, completed: set[str], failed: set[str]) -> bool:
        """Whether the task can never run: tasks it needs finished the wrong way."""
        return self.spec().unreachable(completed, failed)

    def as_dict(self) -> dict[str, Any]:
        """The plain form a task record keeps (its `after`, `follow` metadata)."""
        return self.spec().as_dict()

    def __reduce__(self) -> tuple[Any, ...]:
        return Dependency, (sorted(self), self.all, self.success, self.failure)


def _bound(f: Callable[..., Any]) -> Callable[..., Any]:
    """`f` with the running task's namespace as globals, when it is interactive."""
    namespace = getattr(namespace_of_thread, "namespace", None)
    return f if namespace is None else bind(f, namespace)


class _Requiring:
    """A function that imports its required modules on the engine before it runs."""

    def __init__(self, f: Callable[..., Any], modules: tuple[str, ...]) -> None:
        self.f, self.modules = f, modules
        functools.update_wrapper(self, f)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        f = _bound(self.f)
        globals_ = getattr(f, "__globals__", {})
        for name in self.modules:
            try:
                importlib.import_module(name)
            except ImportError as e:
                raise UnmetDependency(f"module {name!r} cannot be imported here: {e}") from None
            top = name.split(".")[0]
            globals_[top] = importlib.import_module(top)
        return f(*args, **kwargs)


def require(*modules: Any) -> Callable[[Callable[..., Any]], _Requiring]:
    """Decorate a task: it runs only where these modules import (names or module objects)."""
    names = tuple(m if isinstance(m, str) else m.__name__ for m in modules)
    return lambda f: _Requiring(f, names)


class _Depending:
    """A function that runs only where `check(*args, **kwargs)` is true."""

    def __init__(
        self,
        f: Callable[..., Any],
        check: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.f, self.check, self.args, self.kwargs = f, check, args, kwargs
        functools.update_wrapper(self, f)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not _bound(self.check)(*self.args, **self.kwargs):
            name = getattr(self.check, "__name__", "check")
            raise UnmetDependency(f"{name}{self.args!r} is false on this engine")
        return _bound(self.f)(*args, **kwargs)


def depend(
    check: Callable[..., Any], *args: Any, **kwargs: Any
) -> Callable[[Callable[..., Any]], _Depending]:
    """Decorate a task: it runs only on engines where `check(*args, **kwargs)` is true."""
    return lambda f: _Depending(f, check, args, kwargs)


def dependent(
    f: Callable[..., Any], check: Callable[..., Any], *args: Any, **kwargs: Any
) -> _Depending:
    """`f`, to run only on engines where `check(*args, **kwargs)` is true."""
    return _Depending(f, check, args, kwargs)
