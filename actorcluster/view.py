"""DirectView: run code on chosen engines, move data in and out of their namespaces."""

from __future__ import annotations

import builtins
import contextlib
import functools
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from actorcluster._viewbase import View
from actorcluster.actors.messages import Apply, Execute, Pull, Push
from actorcluster.asyncresult import AsyncMapResult
from actorcluster.transport import serialize

if TYPE_CHECKING:
    from actorcluster.client import Client, Targets

__all__ = ["DirectView"]


def _partition(seq: Any, n: int) -> list[Any]:
    """Split `seq` into `n` contiguous blocks of near-equal length (numpy-aware)."""
    length = len(seq)
    bounds = [length * i // n for i in range(n + 1)]
    return [seq[bounds[i] : bounds[i + 1]] for i in range(n)]


def _map_chunk(f: Callable[..., Any], *chunks: Sequence[Any]) -> list[Any]:
    return list(map(f, *chunks))


class DirectView(View):
    """A view on engines chosen by id (the spec's multiengine interface).

    Args:
        client: the client to send through.
        targets: an engine id (results are single values), a list, a slice or "all"
            (re-evaluated at each call).
    """

    def __init__(self, client: Client, targets: Targets = "all", block: bool | None = None) -> None:
        super().__init__(client, targets, block)

    def __len__(self) -> int:
        return len(self.client._resolve(self.targets)[0])

    def _send(self, make: Callable[..., Any], fname: str, block: bool | None, **fields: Any) -> Any:
        engines, single = self.client._resolve(self.targets)
        client = self.client
        requests = [client._request(make, e, **fields) for e in engines]
        blocking = self.block if block is None else block
        ar = client._submit(requests, fname=fname, single=single, blocking=blocking)
        return self._finish(ar, block)

    # -- apply --------------------------------------------------------------------------
    def _apply(
        self,
        f: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        block: bool | None,
    ) -> Any:
        payload = serialize((f, args, kwargs))  # once, shared by every target
        return self._send(Apply, getattr(f, "__name__", "apply"), block, payload=payload)

    def execute(self, code: str, block: bool | None = None) -> Any:
        """Run the statements `code` in the namespace of every target."""
        return self._send(Execute, "execute", block, code=code)

    def run(self, filename: str, block: bool | None = None) -> Any:
        """Run the Python file `filename` (read here) on every target."""
        with builtins.open(filename) as f:
            return self.execute(f.read(), block=block)

    # -- namespaces ---------------------------------------------------------------------
    def push(self, namespace: dict[str, Any], block: bool | None = None) -> Any:
        """Update the namespace of every target with `namespace`."""
        return self._send(Push, "push", block, payload=serialize(dict(namespace)))

    def pull(self, names: str | Sequence[str], block: bool | None = None) -> Any:
        """Get `names` (one name: its value; several: a list) from every target."""
        single = isinstance(names, str)
        key = (names,) if isinstance(names, str) else tuple(names)
        return self._send(Pull, "pull", block, names=key, single=single)

    def __setitem__(self, key: str, value: Any) -> None:
        self.push({key: value}, block=True)

    def __getitem__(self, key: str) -> Any:
        return self.pull(key, block=True)

    def get(self, key: str) -> Any:
        """`view[key]`."""
        return self[key]

    def update(self, namespace: dict[str, Any]) -> None:
        """Push `namespace` and wait."""
        self.push(namespace, block=True)

    def scatter(self, key: str, seq: Sequence[Any], block: bool | None = None) -> Any:
        """Split `seq` into one contiguous block per target and push each as `key`."""
        engines, _ = self.client._resolve(self.targets)
        client = self.client
        requests = [
            client._request(
                Push,
                e,
                payload=serialize({key: part}),
            )
            for e, part in zip(engines, _partition(seq, len(engines)), strict=True)
        ]
        return self._finish(client._submit(requests, fname="scatter"), block)

    def gather(self, key: str, block: bool | None = None) -> Any:
        """Pull `key` from every target and join the blocks (arrays end to end)."""
        engines, _ = self.client._resolve(self.targets)
        client = self.client
        requests = [
            client._request(
                Pull,
                e,
                names=(key,),
                single=True,
            )
            for e in engines
        ]
        return self._finish(client._submit(requests, AsyncMapResult, fname="gather"), block)

    # -- map and decorators ---------------------------------------------------------------
    def map(
        self, f: Callable[..., Any], *sequences: Sequence[Any], block: bool | None = None
    ) -> Any:
        """`map(f, *sequences)` split into one block per target, joined in order."""
        if not sequences:
            raise TypeError("map() needs at least one sequence")
        engines, _ = self.client._resolve(self.targets)
        n = min(len(engines), min(len(s) for s in sequences)) or 1
        length = min(len(s) for s in sequences)
        blocks = [
            _partition(list(s)[:length] if not hasattr(s, "shape") else s[:length], n)
            for s in sequences
        ]
        client = self.client
        requests = [
            client._request(
                Apply,
                engines[i],
                payload=serialize((_map_chunk, (f, *(b[i] for b in blocks)), {})),
            )
            for i in range(n)
        ]
        ar = client._submit(requests, AsyncMapResult, fname=getattr(f, "__name__", "map"))
        return self._finish(ar, block)

    def map_sync(self, f: Callable[..., Any], *sequences: Sequence[Any]) -> Any:
        """`map` and wait."""
        return self.map(f, *sequences, block=True)

    def map_async(self, f: Callable[..., Any], *sequences: Sequence[Any]) -> AsyncMapResult:
        """`map` without waiting."""
        result: AsyncMapResult = self.map(f, *sequences, block=False)
        return result

    def remote(
        self, block: bool | None = None
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function so that calling it applies it on the view's targets."""

        def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(f)
            def call(*args: Any, **kwargs: Any) -> Any:
                return self._apply(f, args, kwargs, block)

            return call

        return decorate

    def parallel(
        self, block: bool | None = None
    ) -> Callable[[Callable[..., Any]], ParallelFunction]:
        """Decorate a function of sequences: a call splits them over the targets."""

        def decorate(f: Callable[..., Any]) -> ParallelFunction:
            return ParallelFunction(self, f, block)

        return decorate

    @contextlib.contextmanager
    def sync_imports(self, local: bool = True) -> Iterator[None]:
        """Imports inside this `with` block also run on every target."""
        real_import = builtins.__import__
        seen: set[str] = set()
        caller = threading.get_ident()
        busy = False

        def remote_import(
            name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            nonlocal busy
            # only the imports written in the `with` block: not other threads', not nested ones
            if threading.get_ident() != caller or busy or level != 0:
                return real_import(name, globals, locals, fromlist, level)
            statement = (
                f"from {name} import {', '.join(fromlist)}" if fromlist else f"import {name}"
            )
            if statement not in seen:
                seen.add(statement)
                busy = True
                try:
                    self.execute(statement, block=True)
                finally:
                    busy = False
            return real_import(name, globals, locals, fromlist, level) if local else None

        builtins.__import__ = remote_import
        try:
            yield
        finally:
            builtins.__import__ = real_import

    # -- control ------------------------------------------------------------------------
    def clear(self, block: bool | None = None) -> Any:
        """Reset the namespaces of the targets."""
        return self.client.clear(self.targets, block=block)

    def abort(self, jobs: Any = None, block: bool | None = None) -> Any:
        """Abort queued requests (`jobs`, or everything queued on the targets)."""
        return self.client.abort(jobs, self.targets, block=block)


class ParallelFunction:
    """A function whose call runs on engines: the arguments are split into blocks."""

    def __init__(self, view: DirectView, f: Callable[..., Any], block: bool | None) -> None:
        self.view, self.f, self.block = view, f, block
        functools.update_wrapper(self, f)

    def __call__(self, *sequences: Sequence[Any]) -> Any:
        """Call `f` on one block of each sequence per target; join the results."""
        view = self.view
        engines, _ = view.client._resolve(view.targets)
        blocks = [_partition(s, len(engines)) for s in sequences]
        client = view.client
        requests = [
            client._request(
                Apply,
                engines[i],
                payload=serialize((self.f, tuple(b[i] for b in blocks), {})),
            )
            for i in range(len(engines))
        ]
        ar = client._submit(requests, AsyncMapResult, fname=getattr(self.f, "__name__", "parallel"))
        return view._finish(ar, self.block)

    def map(self, *sequences: Sequence[Any]) -> Any:
        """Element-wise: `map(f, *sequences)` over the targets."""
        return self.view.map(self.f, *sequences, block=self.block)
