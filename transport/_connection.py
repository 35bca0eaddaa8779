"""Connection files: the addresses and key a client or engine needs to join a cluster.

A connection file is JSON, created with mode 0600 in the `open` call itself (never widened
by the umask, never chmod-ed afterwards), written to a temporary name and renamed into
place so a reader never sees half a file. A file that group or others can read is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from actorcluster.error import ConnectionFileError

__all__ = ["load_connection_file", "new_key", "write_connection_file"]


def new_key() -> str:
    """Return a fresh random HMAC key (hex, 256 bits)."""
    return secrets.token_hex(32)


def write_connection_file(path: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """Write `info` as JSON to `path`, readable by the owner only.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_connection_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a connection file, refusing one that group or others may read.

    Raises:
        ConnectionFileError: the file is missing, unsafe or not a JSON object with a key.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ConnectionFileError(
            f"connection file {str(path)!r} does not exist; start a cluster first "
            "(actorclusterd start) or pass the path of its connection file"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectionFileError(
            f"connection file {str(path)!r} has mode {stat.S_IMODE(mode):04o}: group or others "
            f"can read the cluster's key. Fix it with: chmod 600 {path}"
        )
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConnectionFileError(f"connection file {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(info, dict) or not info.get("key"):
        raise ConnectionFileError(f"connection file {str(path)!r} has no 'key' field")
    return info
