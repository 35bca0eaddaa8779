"""Bounded memories of recent tasks: the oldest entry goes when a new one would pass the limit."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["remember"]

K = TypeVar("K")
V = TypeVar("V")


def remember(memory: dict[K, V], key: K, value: V, limit: int) -> None:
    """Set `memory[key] = value`, first forgetting the oldest entry if `memory` is full."""
    if key not in memory and len(memory) >= limit:
        memory.pop(next(iter(memory)))
    memory[key] = value
