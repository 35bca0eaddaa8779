"""Durability of the task database: an append-only journal plus atomic snapshots.

A database folder holds

    snapshot.json   every record at some moment, TinyDB's layout {"tasks": {doc_id: record}}
    journal.jsonl   changes since that snapshot, one JSON array per line: ["i", record]
                    (a record's state), ["u", msg_id, fields] (fields set on a record
                    journaled before) or ["d", [msg_id, ...]] (removals)
    blobs/          buffers of 64 KiB and more, one file each, named by their SHA-256
    lock            held (flock) by the one process that owns the folder

Changes are appended to an in-memory buffer and made durable by `commit()` (write, then
one fsync for the whole batch: a group commit). A snapshot is written to a temporary file,
fsynced and renamed over the old one; the journal then starts afresh. Loading reads the
snapshot and replays the journal; a torn last line (the process died mid-write) is
ignored, a damaged file anywhere else is refused rather than overwritten.

Buffers, which JSON lacks, are tagged: `{"$bytes": base64}` when small, `{"$blob": sha256}`
when big. Datetimes are written as ISO 8601 strings (by orjson, in C) and read back as
datetimes by key: the record's date fields (`DATE_KEYS`, and `date` in its headers).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gc
import hashlib
import logging
import os
import time
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
        self.journal_path = folder / "journal.jsonl"
        self._lock_fd = _lock(folder / "lock")
        self._pending: list[bytes] = []
        self._new_blobs: list[Path] = []
        self._fd: int | None = None
        self.journal_bytes = 0
        self.commits = 0
        self._referenced: set[str] | None = None  # the blobs a snapshot being written uses

    # -- loading ----------------------------------------------------------------------------
    def load(self) -> dict[str, dict[str, Any]]:
        """Every record (by msg_id), from the snapshot and the journal after it.

        Raises:
            DatabaseCorrupt: a file is damaged (and `recover` is off).
        """
        gc.disable()  # millions of new containers at once: collections would rescan them all
        try:
            return self._load()
        finally:
            gc.enable()

    def _load(self) -> dict[str, dict[str, Any]]:
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
        good = self._replay(records)
        self._fd = os.open(self.journal_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.truncate(self.journal_path, good)  # drop a torn tail before appending after it
        self.journal_bytes = good
        return records

    def _replay(self, records: dict[str, dict[str, Any]]) -> int:
        """Apply the journal to `records`; return the length of its intact part."""
        try:
            data = self.journal_path.read_bytes()
        except FileNotFoundError:
            return 0
        offset = 0
        while offset < len(data):
            end = data.find(b"\n", offset)
            if end < 0:
                logger.warning("ignoring a torn last line in %s", self.journal_path)
                return offset
            try:
                self._apply(records, orjson.loads(data[offset:end]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OSError) as e:
                if end + 1 < len(data):
                    self._damaged(self.journal_path, f"the line at byte {offset}: {e}", offset)
                logger.warning("ignoring a damaged last line in %s: %s", self.journal_path, e)
                return offset
            offset = end + 1
        return offset

    def _apply(self, records: dict[str, dict[str, Any]], op: list[Any]) -> None:
        kind = op[0]
        if kind == "i":
            record = self._decode(op[1])
            records[record["msg_id"]] = record
        elif kind == "u":
            record = records.get(op[1])
            if record is not None:  # else removed after the update: nothing to do
                record.update(self._decode(op[2]))
        elif kind == "d":
            for msg_id in op[1]:
                records.pop(msg_id, None)
        else:
            raise ValueError(f"unknown journal operation {kind!r}")

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
    def insert(self, record: dict[str, Any]) -> None:
        """Journal a record: new, or its new state."""
        self._pending.append(self._encode(["i", record]))

    def update(self, msg_id: str, fields: dict[str, Any]) -> None:
        """Journal fields set on a record journaled before."""
        self._pending.append(self._encode(["u", msg_id, fields]))

    def delete(self, msg_ids: list[str]) -> None:
        """Journal the removal of records."""
        if msg_ids:
            self._pending.append(self._encode(["d", msg_ids]))

    @property
    def dirty(self) -> bool:
        """Whether changes wait for `commit()`."""
        return bool(self._pending)

    def commit(self) -> None:
        """Make every journaled change durable: its blobs, then its lines, one fsync each."""
        if not self._pending or self._fd is None:
            return
        for path in self._new_blobs:
            with contextlib.suppress(FileNotFoundError):
                _fsync_path(path)
        if self._new_blobs:
            _fsync_path(self.folder / "blobs")
            self._new_blobs.clear()
        data = b"".join(self._pending)
        self._pending.clear()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        self.journal_bytes += len(data)
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

    # -- values -----------------------------------------------------------------------------
    def _encode(self, op: list[Any]) -> bytes:
        return orjson.dumps(op, default=self._tag, option=_OPTIONS | orjson.OPT_APPEND_NEWLINE)

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
