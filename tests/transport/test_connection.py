"""Connection files: created 0600 at open time, unsafe ones refused."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from actorcluster.transport import load_connection_file, new_key, write_connection_file

from actorcluster.error import ConnectionFileError


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
def test_connection_file_is_created_owner_only_even_under_umask_000(tmp_path: Path) -> None:
    path = write_connection_file(tmp_path / "security" / "client.json", {"key": new_key()})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_connection_file(path)["key"]


def test_rewriting_a_connection_file_keeps_it_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    write_connection_file(path, {"key": "a"})
    write_connection_file(path, {"key": "b"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_connection_file(path)["key"] == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_a_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write_connection_file(tmp_path / "c.json", {"key": new_key()})
    path.chmod(0o644)
    with pytest.raises(ConnectionFileError, match=r"mode 0644.*chmod 600"):
        load_connection_file(path)


def test_missing_and_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFileError, match="does not exist"):
        load_connection_file(tmp_path / "nope.json")
    bad = write_connection_file(tmp_path / "bad.json", {"no": "key"})
    with pytest.raises(ConnectionFileError, match="no 'key'"):
        load_connection_file(bad)


def test_new_keys_are_random() -> None:
    assert new_key() != new_key()
    assert len(new_key()) == 64
