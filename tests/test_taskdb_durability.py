"""A controller killed with SIGKILL in a burst of writes keeps every acknowledged result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from actorcluster import Client
from actorcluster.error import TaskAborted
from tests.conftest import ROOT, wait_until

pytestmark = pytest.mark.slow

CONTROLLER = [sys.executable, "-m", "actorcluster.cli", "controller", "--dir"]


class Controller:
    """`actorclusterd controller` with one engine and a file database in `folder`."""

    def __init__(self, folder: Path, cluster_id: str = "") -> None:
        suffix = f"-{cluster_id}" if cluster_id else ""
        self.client_file = folder / f"actorcluster-client{suffix}.json"
        self.client_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [*CONTROLLER, str(folder), "-n", "1", "--db", "tinydb", "--cluster-id", cluster_id],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        wait_until(lambda: self.client_file.exists() or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def kill(self) -> None:
        """SIGKILL the controller and every process it started."""
        if self.proc.poll() is not None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for child in children:
            try:
                child.kill()
                child.wait(timeout=10)
            except psutil.NoSuchProcess:
                pass


def _square(x: int) -> int:
    return x * x


def test_a_controller_killed_during_writes_keeps_every_acknowledged_result(tmp_path: Path) -> None:
    acknowledged: dict[str, int] = {}
    in_flight: list[str] = []
    for _ in range(3):  # kill, restart, kill again: each restart finds everything
        controller = Controller(tmp_path)
        try:
            with Client(controller.client_file, timeout=30) as rc:
                rc.wait_for_engines(1, timeout=30)
                found = rc.db_query({"msg_id": {"$in": list(acknowledged)}}, ["msg_id"])
                assert {r["msg_id"] for r in found} == set(acknowledged)
                for msg_id, value in list(acknowledged.items())[-20:]:
                    assert rc.get_result(msg_id, block=True) == value
                # what the database heard of the burst in flight at the kill is not pending
                # for ever: it finished, or was failed explicitly at the restart
                stuck = rc.db_query({"msg_id": {"$in": in_flight}, "completed": None})
                assert stuck == []
                view = rc.load_balanced_view()
                for _ in range(5):  # bursts of tasks; what the database answered is acked
                    ars = [view.apply_async(_square, i) for i in range(50)]
                    for ar in ars:
                        ar.get(timeout=30)
                    ids = [ar.msg_ids[0] for ar in ars]
                    query = {"msg_id": {"$in": ids}, "completed": {"$ne": None}}
                    wait_until(lambda q=query: len(rc.db_query(q, ["msg_id"])) == 50, 10)
                    acknowledged.update(zip(ids, [i * i for i in range(50)], strict=True))
                burst = [view.apply_async(_square, i) for i in range(200)]
                in_flight = [ar.msg_ids[0] for ar in burst]
                controller.kill()  # while the burst is being written
        finally:
            controller.kill()
    assert len(acknowledged) >= 500
    controller = Controller(tmp_path)
    try:
        with Client(controller.client_file, timeout=30) as rc:
            found = rc.db_query({"msg_id": {"$in": list(acknowledged)}}, ["msg_id"])
            assert len(found) == len(acknowledged)
            interrupted = rc.db_query({"msg_id": {"$in": in_flight}, "completed": None}, ["msg_id"])
            assert interrupted == []
    finally:
        controller.kill()


def test_tasks_pending_at_a_kill_are_failed_explicitly_after_the_restart(tmp_path: Path) -> None:
    controller = Controller(tmp_path)
    try:
        with Client(controller.client_file, timeout=30) as rc:
            rc.wait_for_engines(1, timeout=30)
            ar = rc[0].execute("import time; time.sleep(30)")
            wait_until(lambda: rc.db_query({"msg_id": ar.msg_ids[0]}, ["msg_id"]) != [], 10)
            controller.kill()
        controller = Controller(tmp_path)
        with (
            Client(controller.client_file, timeout=30) as rc,
            pytest.raises(TaskAborted, match="pending when its controller stopped"),
        ):
            rc.get_result(ar.msg_ids[0], block=True)
    finally:
        controller.kill()


def _refused_start(folder: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Run a controller that must refuse to start; return what it said."""
    started = subprocess.run(
        [*CONTROLLER, str(folder), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert started.returncode == 1, started.stderr
    return started


def test_a_second_controller_on_the_same_database_is_refused(tmp_path: Path) -> None:
    controller = Controller(tmp_path, cluster_id="one")
    try:
        other = _refused_start(
            tmp_path, "--cluster-id", "two", "--db-dir", str(tmp_path / "db-one")
        )
        assert "in use by another process" in other.stderr and "db-one" in other.stderr
    finally:
        controller.kill()


def test_a_damaged_database_stops_the_start_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir(mode=0o700)
    (tmp_path / "db" / "snapshot.json").write_text("{not json")
    started = _refused_start(tmp_path, "--db", "tinydb")
    assert "snapshot.json" in started.stderr and "--recover" in started.stderr
    assert (tmp_path / "db" / "snapshot.json").read_text() == "{not json"
