"""What the scheduler knows of every task, to judge graph dependencies (`after`, `follow`)."""

from __future__ import annotations

from actorcluster.actors.messages import DependencySpec

from actorcluster.error import ImpossibleDependency, InvalidDependency

__all__ = ["TaskGraph"]


class TaskGraph:
    """The msg_ids seen, and where and how each finished task ended."""

    def __init__(self) -> None:
        self.known: set[str] = set()
        self.completed: set[str] = set()
        self.failed: set[str] = set()
        self.where: dict[str, int] = {}

    def submitted(self, msg_id: str) -> None:
        self.known.add(msg_id)

    def finished(self, msg_id: str, engine: int, ok: bool) -> None:
        self.known.add(msg_id)
        (self.completed if ok else self.failed).add(msg_id)
        if engine >= 0:
            self.where[msg_id] = engine

    def verdict(
        self, msg_id: str, after: DependencySpec | None, follow: DependencySpec | None
    ) -> bool:
        """True when the task may run now, False when it must wait.

        Raises:
            InvalidDependency: a dependency names a msg_id never seen.
            ImpossibleDependency: the dependencies can never be met.
        """
        for dep in (after, follow):
            if dep is None:
                continue
            unknown = dep.ids - self.known
            if unknown:
                raise InvalidDependency(
                    f"task {msg_id} depends on unknown msg_ids {sorted(unknown)}"
                )
            if dep.unreachable(self.completed, self.failed):
                raise ImpossibleDependency(
                    f"task {msg_id} can never run: its dependencies finished the wrong way "
                    f"(all={dep.all}, success={dep.success}, failure={dep.failure})"
                )
        if follow is not None and follow.all:
            engines = {self.where[m] for m in follow.ids if m in self.where}
            if len(engines) > 1:
                raise ImpossibleDependency(
                    f"task {msg_id} must follow tasks that ran on different engines {sorted(engines)}"
                )
        return all(
            dep.check(self.completed, self.failed) for dep in (after, follow) if dep is not None
        )

    def follow_engines(self, follow: DependencySpec | None) -> set[int] | None:
        """The engines a task following `follow` may run on (None: any)."""
        if follow is None or not follow.ids:
            return None
        return {self.where[m] for m in follow.ids if m in self.where}
