"""The actors of a cluster: hub, heart monitor, scheduler, DB writer and engine."""

from __future__ import annotations

__all__: list[str] = []
