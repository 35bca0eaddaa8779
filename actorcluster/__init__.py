"""actorcluster: a parallel-computing cluster in the shape of IPython.parallel, built on actors.

from actorcluster import Cluster
with Cluster(n=4) as rc:
    print(rc[:].apply_sync(lambda: 42))
"""

from __future__ import annotations

from actorcluster import error
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
