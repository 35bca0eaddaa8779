"""Scheduling schemes: which of the engines with room takes the next task.

Each scheme gets the candidate engines (ids), their outstanding task counts and the time
each was last given a task, and returns one id. The candidates are never empty.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["SCHEMES", "Scheme"]

Scheme = Callable[[Sequence[int], dict[int, int], dict[int, float]], int]


def leastload(candidates: Sequence[int], loads: dict[int, int], used: dict[int, float]) -> int:
    """Fewest outstanding tasks; the least recently used among equals."""
    return min(candidates, key=lambda e: (loads[e], used[e]))


def lru(candidates: Sequence[int], loads: dict[int, int], used: dict[int, float]) -> int:
    """The engine given a task longest ago."""
    return min(candidates, key=lambda e: used[e])


def plainrandom(candidates: Sequence[int], loads: dict[int, int], used: dict[int, float]) -> int:
    """Any engine, uniformly."""
    return random.choice(candidates)


def twobin(candidates: Sequence[int], loads: dict[int, int], used: dict[int, float]) -> int:
    """Two engines at random; the less recently used of them."""
    if len(candidates) == 1:
        return candidates[0]
    a, b = random.sample(list(candidates), 2)
    return a if used[a] <= used[b] else b


def weighted(candidates: Sequence[int], loads: dict[int, int], used: dict[int, float]) -> int:
    """Two engines at random, weighted by the inverse of their loads; the less loaded one."""
    if len(candidates) == 1:
        return candidates[0]
    weights = np.array([1.0 / (1 + loads[e]) for e in candidates])
    a, b = np.random.choice(len(candidates), size=2, replace=False, p=weights / weights.sum())
    first, second = candidates[int(a)], candidates[int(b)]
    return first if loads[first] <= loads[second] else second


SCHEMES: dict[str, Scheme] = {
    "leastload": leastload,
    "lru": lru,
    "plainrandom": plainrandom,
    "twobin": twobin,
    "weighted": weighted,
}
