"""actorcluster: a parallel-computing cluster in the shape of IPython.parallel, built on actors.

from actorcluster import Cluster
with Cluster(n=4) as rc:
    print(rc[:].apply_sync(lambda: 42))

The public names load on first use, so engine and controller processes, which import the
package too, do not load the client.
"""

from __future__ import annotations

import importlib
import typing

from actorcluster import error

if typing.TYPE_CHECKING:
    from actorcluster.asyncresult import AsyncMapResult, AsyncResult, Metadata
    from actorcluster.client import Client
    from actorcluster.cluster import Cluster
    from actorcluster.dependency import Dependency, depend, dependent, require
    from actorcluster.loadbalanced import LoadBalancedView
    from actorcluster.transport import interactive
    from actorcluster.view import DirectView

__all__ = [
    "AsyncMapResult",
    "AsyncResult",
    "Client",
    "Cluster",
    "Dependency",
    "DirectView",
    "LoadBalancedView",
    "Metadata",
    "depend",
    "dependent",
    "error",
    "interactive",
    "require",
]
__version__ = "0.1.0"

_WHERE = {
    "AsyncMapResult": "actorcluster.asyncresult",
    "AsyncResult": "actorcluster.asyncresult",
    "Metadata": "actorcluster.asyncresult",
    "Client": "actorcluster.client",
    "Cluster": "actorcluster.cluster",
    "Dependency": "actorcluster.dependency",
    "depend": "actorcluster.dependency",
    "dependent": "actorcluster.dependency",
    "require": "actorcluster.dependency",
    "LoadBalancedView": "actorcluster.loadbalanced",
    "interactive": "actorcluster.transport",
    "DirectView": "actorcluster.view",
}


def __getattr__(name: str) -> typing.Any:
    """Load a public name on first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'actorcluster' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
