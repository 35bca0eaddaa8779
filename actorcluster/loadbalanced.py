"""LoadBalancedView: tasks go to whichever engine the scheduler picks."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from actorcluster._viewbase import View
from actorcluster.actors.messages import Apply, DependencySpec, SubmitTask
from actorcluster.asyncresult import AsyncMapResult, AsyncResult
from actorcluster.dependency import Dependency
from actorcluster.transport import call_serialized, serialize

if TYPE_CHECKING:
    from actorcluster.client import Client, Targets

__all__ = ["LoadBalancedView"]


def _map_serialized(data: bytes, *chunks: Sequence[Any]) -> list[Any]:
    """On an engine: map the function pickled in `data` over one chunk of each sequence."""
    return [call_serialized(data, *args) for args in zip(*chunks, strict=False)]


class LoadBalancedView(View):
    """A view on the engine pool: each task runs on an engine the scheduler chooses.

    Args:
        client: the client to send through.
        targets: the engines tasks may run on (None: any, including engines that join later).
    """

    flags = ("block", "targets", "retries", "timeout", "after", "follow")

    def __init__(self, client: Client, targets: Targets = None, block: bool | None = None) -> None:
        super().__init__(client, targets, block)
        self.retries = 0
        self.timeout: float | None = None
        self.after: Any = None
        self.follow: Any = None

    def __len__(self) -> int:
        return (
            len(self.client.ids)
            if self.targets is None
            else len(self.client._resolve(self.targets)[0])
        )

    def _check_flag(self, key: str, value: Any) -> None:
        if key == "retries" and (not isinstance(value, int) or value < 0):
            raise ValueError(f"retries must be an int >= 0, not {value!r}")
        if (
            key == "timeout"
            and value is not None
            and (not isinstance(value, int | float) or value <= 0)
        ):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, not {value!r}")

    def _targets(self) -> tuple[int, ...] | None:
        if self.targets is None or self.targets == "all":
            return None
        return tuple(self.client._resolve(self.targets)[0])

    def _tasks(self, payloads: list[Any]) -> list[SubmitTask]:
        client, targets, retries, timeout = self.client, self._targets(), self.retries, self.timeout
        after, follow = _graph(self.after), _graph(self.follow)
        known = self._known(after, follow)
        return [
            SubmitTask(
                request=client._request(Apply, -1, payload=payload),
                targets=targets,
                retries=retries,
                timeout=timeout,
                after=after,
                follow=follow,
                known=known,
            )
            for payload in payloads
        ]

    def _known(self, *graphs: DependencySpec | None) -> tuple[tuple[str, int, str], ...]:
        """What this client knows of the tasks these dependencies name."""
        metadata = self.client.metadata
        known = []
        for graph in graphs:
            for msg_id in sorted(graph.ids) if graph else ():
                md = metadata.get(msg_id)
                if md is not None:
                    engine = md["engine_id"] if md["engine_id"] is not None else -1
                    known.append((msg_id, engine, md["status"] or ""))
        return tuple(known)

    # -- apply --------------------------------------------------------------------------
    def _apply(
        self,
        f: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        block: bool | None,
    ) -> Any:
        tasks = self._tasks([serialize((f, args, kwargs))])
        blocking = self.block if block is None else block
        fname = getattr(f, "__name__", "apply")
        ar = self.client._submit(tasks, fname=fname, single=True, blocking=blocking)
        return self._finish(ar, block)

    def abort(self, jobs: Any, block: bool | None = None) -> Any:
        """Abort tasks not yet run (`jobs`: AsyncResults or msg_ids); they raise `TaskAborted`."""
        return self.client.abort(jobs, block=block)

    # -- map ----------------------------------------------------------------------------
    def map(
        self,
        f: Callable[..., Any],
        *sequences: Sequence[Any],
        block: bool | None = None,
        chunksize: int = 1,
        ordered: bool = True,
    ) -> Any:
        """`map(f, *sequences)` as tasks of `chunksize` elements, balanced over the engines.

        Iterating over the (non-blocking) result yields elements as their chunks finish:
        in order, or as they come with `ordered=False`.
        """
        if not sequences:
            raise TypeError("map() needs at least one sequence")
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be an int >= 1, not {chunksize!r}")
        length = min(len(s) for s in sequences)
        data = serialize(f)
        if data.buffers:  # a function carrying large buffers: send it whole with each chunk
            chunk_call: Callable[..., Any] = functools.partial(_map_chunk, f)
        else:
            chunk_call = functools.partial(_map_serialized, data.data)
        payloads = [
            serialize((chunk_call, tuple(s[i : i + chunksize] for s in sequences), {}))
            for i in range(0, length, chunksize)
        ]
        ar = self.client._submit(
            self._tasks(payloads),
            AsyncMapResult,
            fname=getattr(f, "__name__", "map"),
            ordered=ordered,
        )
        return self._finish(ar, block)

    def map_sync(self, f: Callable[..., Any], *sequences: Sequence[Any], **options: Any) -> Any:
        """`map` and wait."""
        return self.map(f, *sequences, block=True, **options)

    def map_async(
        self, f: Callable[..., Any], *sequences: Sequence[Any], **options: Any
    ) -> AsyncMapResult:
        """`map` without waiting."""
        result: AsyncMapResult = self.map(f, *sequences, block=False, **options)
        return result

    def imap(
        self, f: Callable[..., Any], *sequences: Sequence[Any], **options: Any
    ) -> Iterator[Any]:
        """Iterate over `map(f, *sequences)` as results arrive."""
        return iter(self.map(f, *sequences, block=False, **options))

    def parallel(
        self, block: bool | None = None, chunksize: int = 1
    ) -> Callable[[Callable[..., Any]], Any]:
        """Decorate a function: `f.map(seq)` maps it over the pool; `f(x)` applies it."""

        def decorate(f: Callable[..., Any]) -> Any:
            view = self

            @functools.wraps(f)
            def call(*args: Any, **kwargs: Any) -> Any:
                return view._apply(f, args, kwargs, block)

            call.map = lambda *seqs: view.map(f, *seqs, block=block, chunksize=chunksize)  # type: ignore[attr-defined]
            return call

        return decorate


def _graph(dependency: Any) -> DependencySpec | None:
    """A Dependency, or msg_ids/AsyncResults (meaning all, success only), as it travels."""
    if dependency is None:
        return None
    if not isinstance(dependency, Dependency):
        items = [dependency] if isinstance(dependency, str | AsyncResult) else dependency
        dependency = Dependency(items)
    return dependency.spec() if dependency else None


def _map_chunk(f: Callable[..., Any], *chunks: Sequence[Any]) -> list[Any]:
    return list(map(f, *chunks))
