"""Profiles: where a cluster keeps its connection files, logs and pid files.

`$ACTORCLUSTER_DIR` (default `~/.actorcluster`) holds one folder per profile,
`profile_<name>/` with `security/` (connection files, 0700), `log/` and `pid/`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["connection_file", "profile_dir"]


def profile_dir(profile: str | None = None) -> Path:
    """Return the folder of `profile` ("default" when None)."""
    base = Path(os.environ.get("ACTORCLUSTER_DIR", Path.home() / ".actorcluster"))
    return base / f"profile_{profile or 'default'}"


def connection_file(
    profile: str | None = None, cluster_id: str | None = None, kind: str = "client"
) -> Path:
    """Return the path of a cluster's `client` or `engine` connection file."""
    suffix = f"-{cluster_id}" if cluster_id else ""
    return profile_dir(profile) / "security" / f"actorcluster-{kind}{suffix}.json"
