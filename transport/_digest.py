"""BLAKE3 digests of buffer frames (signed by way of the header that lists them).

BLAKE3 rather than SHA-256: buffers are hashed once by their sender and once by their
user, and on this hot path of large arrays BLAKE3 runs about twice as fast on one core
and spreads a large buffer over every core.
"""

from __future__ import annotations

from typing import Any

from blake3 import blake3

__all__ = ["digest"]

_THREADED_FROM = 8 * 2**20  # bytes: below this, threads cost more than they save


def digest(buffer: Any) -> str:
    """Return the hex BLAKE3 of `buffer` (any object with the buffer protocol)."""
    # no memoryview of a memoryview: chains of them in a reference cycle have crashed the
    # garbage collector of CPython 3.11
    view = buffer if isinstance(buffer, memoryview) else memoryview(buffer)
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    threads = blake3.AUTO if view.nbytes >= _THREADED_FROM else 1
    return blake3(view, max_threads=threads).hexdigest()
