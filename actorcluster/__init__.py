"""actorcluster: a parallel-computing cluster in the shape of IPython.parallel, built on actors."""

from __future__ import annotations

from actorcluster import error
from actorcluster.transport import interactive

__all__ = ["error", "interactive"]
__version__ = "0.1.0"
