"""Durability of the task database: an append-only journal plus atomic snapshots.

A database folder holds

    snapshot.json   every record at some moment, TinyDB's layout {"tasks": {doc_id: record}}
    journal.bin     the operations since that snapshot (the store's, opaque here): one frame
                    per commit, [length, CRC-32, pickle of the list of operations]
    blobs/          buffers of 64 KiB and more of the snapshot, one file each, by SHA-256
    lock            held (flock) by the one process that owns the folder (mode 0700)

Operations are queued in memory and made durable by `commit()` (write, then one fsync for
the whole batch: a group commit). They are pickled, not JSON: an operation is mostly the
signed bytes the DB writer's messages arrived in, which pickle as they are (the journal is
read only by the controller that owns the folder). A snapshot is
written to a temporary file, fsynced and renamed over the old one; the journal then starts
afresh. Loading reads the snapshot and the journal's operations; a torn last frame (the
process died mid-write) is ignored, a damaged file anywhere else is refused rather than
overwritten.

In the snapshot, buffers (which JSON lacks) are tagged: `{"$bytes": base64}` when small,
`{"$blob": sha256}` when big. Datetimes are written as ISO 8601 strings (by orjson, in C)
and read back as datetimes by key: the record's date fields (`DATE_KEYS`, and `date` in its
headers).
"""

from __future__ import annotations

import base64
import fcntl
import gc
import hashlib
import logging
import os
import pickle
import struct
import time
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from actorcluster.error import ActorClusterError

__all__ = ["DatabaseCorrupt", "DatabaseLocked", "Journal"]

logger = logging.getLogger(__name__)

BLOB_MIN = 64 * 1024
_TABLE = "tasks"
_OPTIONS = 0  # aware datetimes as ISO 8601, in C
DATE_KEYS = frozenset({"submitted", "started", "completed", "received", "date"})
_FRAME = struct.Struct("<II")  # a journal frame's length and CRC-32


class DatabaseLocked(ActorClusterError):
    """Another process owns the database folder."""


class DatabaseCorrupt(ActorClusterError):
    """A database file cannot be read; it is left as it is."""


class Journal:
    """The files of one database folder, owned by this process while open.

    Args:
        folder: the database folder (created if missing, mode 0700).
        recover: move a damaged file aside (`<name>.corrupt-<time>`) and keep what could be
            read, instead of refusing to start.

    Raises:
        DatabaseLocked: another live process holds the folder.
    """

    def __init__(self, folder: Path, *, recover: bool = False) -> None:
        self.folder = folder
        self.recover = recover
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        (folder / "blobs").mkdir(mode=0o700, exist_ok=True)
        self.snapshot_path = folder / "snapshot.json"
        self.journal_path = folder / "journal.bin"
        self._lock_fd = _lock(folder / "lock")
        self._pending: list[tuple[Any, ...]] = []
        self._new_blobs: list[Path] = []
        self._fd: int | None = None
        self.journal_bytes = 0
        self.commits = 0
        self._referenced: set[str] | None = None  # the blobs a snapshot being written uses

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
        """Every record of the snapshot (by msg_id), and the operations journaled after it.

        Raises:
            DatabaseCorrupt: a file is damaged (and `recover` is off).
        """
        gc.disable()  # millions of new containers at once: collections would rescan them all
        try:
            return self._load()
        finally:
            gc.enable()

    def _load(self) -> tuple[dict[str, dict[str, Any]], list[tuple[Any, ...]]]:
        old = self.folder / "journal.jsonl"
        if old.exists():
            self._damaged(old, "a journal of an earlier version of actorcluster")
        records: dict[str, dict[str, Any]] = {}
        if self.snapshot_path.exists():
            try:
                table = orjson.loads(self.snapshot_path.read_bytes())[_TABLE]
                for record in table.values():
                    decoded = self._decode(record)
                    records[decoded["msg_id"]] = decoded
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, OSError) as e:
                self._damaged(self.snapshot_path, f"not a task database snapshot: {e}")
                records.clear()
        operations: list[tuple[Any, ...]] = []
        good = self._replay(operations)
        self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.truncate(self.journal_path, good)  # drop a torn tail before appending after it
        self.journal_bytes = good
        return records, operations

    def _replay(self, operations: list[tuple[Any, ...]]) -> int:
        """Read the journal's operations; return the length of its intact part."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return 0
        offset = 0
        while offset < len(data):
            start = offset + _FRAME.size
            length, crc = _FRAME.unpack_from(data, offset) if start <= len(data) else (0, 0)
            end = start + length
            if start > len(data) or end > len(data):
                logger.warning("ignoring a torn last frame in %s", self.journal_path)
                return offset
            frame = memoryview(data)[start:end]
            try:
                if zlib.crc32(frame) != crc:
                    raise ValueError("its checksum does not match")
                operations.extend(pickle.loads(frame))
            except Exception as e:  # noqa: BLE001 - whatever is wrong, the frame is damaged
                if end < len(data):
                    self._damaged(self.journal_path, f"the frame at byte {offset}: {e}", offset)
                logger.warning("ignoring a damaged last frame in %s: %s", self.journal_path, e)
                return offset
            offset = end
        return offset

    def _damaged(self, path: Path, why: str, keep: int = 0) -> None:
        """Refuse the damaged file, or (`recover`) move it aside keeping its first `keep` bytes."""
        if not self.recover:
            raise DatabaseCorrupt(
                f"the task database file {path} is damaged ({why}); it was left untouched. "
                "Move it away, or start with --recover to move it aside and keep what is readable"
            )
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        if keep:
            path.write_bytes(aside.read_bytes()[:keep])
        logger.warning("moved the damaged %s aside to %s (%s)", path, aside, why)

    # -- writing ----------------------------------------------------------------------------
    def append(self, operation: tuple[Any, ...]) -> None:
        """Journal an operation (made durable by the next `commit()`)."""
        self._pending.append(operation)

    @property
    def dirty(self) -> bool:
        """Whether operations wait for `commit()`."""
        return bool(self._pending)

    def commit(self) -> None:
        """Make every journaled operation durable: one frame, one write, one fsync."""
        if not self._pending or self._fd is None:
            return
        data = pickle.dumps(self._pending, protocol=pickle.HIGHEST_PROTOCOL)
        self._pending.clear()
        view = memoryview(_FRAME.pack(len(data), zlib.crc32(data)) + data)
        size = len(view)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self.journal_bytes += size
        self.commits += 1

    def snapshot(self, records: Iterator[dict[str, Any]]) -> None:
        """Write every record as the new snapshot (atomically) and start an empty journal."""
        self.commit()
        table = {str(n): record for n, record in enumerate(records, 1)}
        referenced: set[str] = set()
        self._referenced = referenced
        try:
            data = orjson.dumps({_TABLE: table}, default=self._tag, option=_OPTIONS)
        finally:
            self._referenced = None
        for path in self._new_blobs:
            _fsync_path(path)
        self._new_blobs.clear()
        temporary = self.snapshot_path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.snapshot_path)
        _fsync_path(self.folder)
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        self.journal_bytes = 0
        for path in (self.folder / "blobs").iterdir():
            if path.name not in referenced:
                path.unlink(missing_ok=True)  # no record uses it any more

    def close(self) -> None:
        """Commit, close the journal and release the folder."""
        self.commit()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        os.close(self._lock_fd)

    # -- values of the snapshot ------------------------------------------------------------
    def _tag(self, value: Any) -> Any:
        if isinstance(value, bytes | bytearray | memoryview):
            data = value if type(value) is bytes else bytes(value)  # frames: memoryviews
            if len(data) < BLOB_MIN:
                return {"$bytes": base64.b64encode(data).decode("ascii")}
            digest = hashlib.sha256(data).hexdigest()
            if self._referenced is not None:
                self._referenced.add(digest)
            path = self.folder / "blobs" / digest
            if not path.exists():
                temporary = path.with_suffix(".tmp")
                temporary.write_bytes(data)
                os.replace(temporary, path)
                self._new_blobs.append(path)
            return {"$blob": digest}
        if isinstance(value, tuple | set | frozenset):
            return list(value)
        raise TypeError(f"cannot store a {type(value).__name__} in the task database")

    def _decode(self, value: Any, key: str = "") -> Any:
        if isinstance(value, str):
            return datetime.fromisoformat(value) if key in DATE_KEYS else value
        if isinstance(value, dict):
            if len(value) == 1:
                ((tag, inner),) = value.items()
                if tag == "$bytes":
                    return base64.b64decode(inner)
                if tag == "$blob":
                    return (self.folder / "blobs" / inner).read_bytes()
            return {k: self._decode(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._decode(v) for v in value]
        return value


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DatabaseLocked(
            f"the task database {path.parent} is in use by another process (pid {holder}); "
            "stop that cluster first, or give this one another profile or database folder"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
