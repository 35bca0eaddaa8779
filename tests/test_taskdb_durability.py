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
from actorcluster.error import NodeUnreachable, TaskAborted
from tests.conftest import ROOT, Gate, through_gate, wait_until

pytestmark = pytest.mark.slow

CONTROLLER = [sys.executable, "-m", "actorcluster.cli", "controller", "--dir"]
ENGINE = [sys.executable, "-m", "actorcluster.cli", "engine", "--file"]


class Controller:
    """`actorclusterd controller` with `n` engines and a file database in `folder`."""

    def __init__(self, folder: Path, cluster_id: str = "", n: int = 1, *extra: str) -> None:
        suffix = f"-{cluster_id}" if cluster_id else ""
        self.client_file = folder / f"actorcluster-client{suffix}.json"
        self.engine_file = folder / f"actorcluster-engine{suffix}.json"
        self.client_file.unlink(missing_ok=True)
        arguments = ["-n", str(n), "--db", "tinydb", "--cluster-id", cluster_id, *extra]
        self.proc = subprocess.Popen(
            [*CONTROLLER, str(folder), *arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        wait_until(lambda: self.client_file.exists() or self.proc.poll() is not None, 30)
        assert self.proc.poll() is None, self.proc.stderr.read() if self.proc.stderr else ""

    def client(self, engines: int = 1) -> Client:
        """A client of this controller, once `engines` engines registered."""
        rc = Client(self.client_file, timeout=30)
        try:
            rc.wait_for_engines(engines, timeout=30)
        except BaseException:
            rc.close()
            raise
        return rc

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
            with controller.client() as rc:
                found = rc.db_query({"msg_id": {"$in": list(acknowledged)}}, ["msg_id"])
                assert {r["msg_id"] for r in found} == set(acknowledged)
                for msg_id, value in list(acknowledged.items())[-20:]:
                    assert rc.get_result(msg_id, block=True) == value
                # what the database heard of the burst in flight at the kill is not pending
                # for ever: it finished, or was failed explicitly after the restart
                stuck = {"msg_id": {"$in": in_flight}, "completed": None}
                wait_until(lambda q=stuck: rc.db_query(q, ["msg_id"]) == [], 30)
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
        with controller.client(0) as rc:
            found = rc.db_query({"msg_id": {"$in": list(acknowledged)}}, ["msg_id"])
            assert len(found) == len(acknowledged)
            interrupted = {"msg_id": {"$in": in_flight}, "completed": None}
            wait_until(lambda: rc.db_query(interrupted, ["msg_id"]) == [], 30)
    finally:
        controller.kill()


def test_tasks_pending_at_a_kill_are_failed_explicitly_after_the_restart(
    tmp_path: Path, engine_gate: Gate
) -> None:
    controller = Controller(tmp_path)
    try:
        with controller.client() as rc:
            ar = rc[0].apply_async(through_gate, engine_gate.path)  # held until the kill
            wait_until(lambda: rc.db_query({"msg_id": ar.msg_ids[0]}, ["msg_id"]) != [], 10)
            controller.kill()
        controller = Controller(tmp_path)
        with (
            controller.client(0) as rc,
            pytest.raises(TaskAborted, match="pending when its controller stopped"),
        ):
            rc.get_result(ar.msg_ids[0], block=True)
    finally:
        controller.kill()


def test_a_restarted_controller_gets_back_its_engines_clients_and_late_results(
    tmp_path: Path, engine_gate: Gate
) -> None:
    controller = Controller(tmp_path, "", 0, "--reuse")
    engine = subprocess.Popen(
        [*ENGINE, str(controller.engine_file), "--reconnect", "60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        with controller.client() as rc:
            rc[0].push({"kept": 42}, block=True)
            done = rc[0].apply_async(_square, 7)
            assert done.get(timeout=30) == 49
            running = rc[0].apply_async(through_gate, engine_gate.path)
            engine_gate.wait_for_task()
            ids = [*done.msg_ids, *running.msg_ids]
            wait_until(lambda: len(rc.db_query({"msg_id": {"$in": ids}}, ["msg_id"])) == 2, 10)
            controller.kill()  # the engine, started on its own, lives on
            engine_gate.open()  # the running task finishes while no controller runs
            controller = Controller(tmp_path, "", 0, "--reuse")

            def engine_back() -> bool:
                try:
                    return 0 in rc.hub_status()["engines"]
                except Exception:  # noqa: BLE001 - the client reconnects on its next ask
                    return False

            wait_until(engine_back, 30)
            assert rc.ids == [0]
            assert rc[0].pull("kept", block=True) == 42  # the namespace survived
            assert running.get(timeout=30) == "through"  # held, then delivered
            assert rc.get_result(done.msg_ids[0], block=True) == 49
            late = {"msg_id": running.msg_ids[0], "completed": {"$ne": None}}
            wait_until(lambda: rc.db_query(late, ["msg_id"]) != [], 10)
            (record,) = rc.db_query(late, ["result_content"])
            assert record["result_content"]["status"] == "ok"
    finally:
        engine.kill()
        engine.wait(timeout=10)
        controller.kill()


def test_a_balanced_task_lost_with_its_controller_runs_again_if_it_has_retries(
    tmp_path: Path,
) -> None:
    controller = Controller(tmp_path, "", 0, "--reuse")  # no engine: tasks wait unassigned
    try:
        with controller.client(0) as rc:
            view = rc.load_balanced_view()
            view.retries = 1
            again = view.apply_async(_square, 6)
            view.retries = 0
            once = view.apply_async(_square, 5)
            ids = [*again.msg_ids, *once.msg_ids]
            wait_until(lambda: len(rc.db_query({"msg_id": {"$in": ids}}, ["msg_id"])) == 2, 10)
            controller.kill()
            controller = Controller(tmp_path, "", 1, "--reuse")
            assert again.get(timeout=30) == 36
            with pytest.raises(TaskAborted, match="resubmit it"):
                once.get(timeout=30)
    finally:
        controller.kill()


def test_a_request_sent_while_the_controller_is_gone_fails_at_once(tmp_path: Path) -> None:
    controller = Controller(tmp_path)
    try:
        with controller.client() as rc:
            assert rc[0].apply_sync(_square, 3) == 9
            controller.kill()
            ar = rc[0].apply_async(_square, 4)
            with pytest.raises(NodeUnreachable, match=r"was not sent: .* is unreachable"):
                ar.get(timeout=30)
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
