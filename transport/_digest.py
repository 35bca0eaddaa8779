"""SHA-256 digests of buffer frames (signed by way of the header that lists them)."""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["digest"]


def digest(buffer: Any) -> str:
    """Return the hex SHA-256 of `buffer` (any object with the buffer protocol)."""
    # no memoryview of a memoryview: chains of them in a reference cycle have crashed the
    # garbage collector of CPython 3.11
    view = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return hashlib.sha256(view).hexdigest()
