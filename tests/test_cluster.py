"""Cluster life cycle on real processes: engine death, clean-up, and `actorclusterd`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from actorcluster import Client, Cluster
from actorcluster.error import EngineError
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_killed_engine_fails_its_task_with_engine_error_and_leaves_ids() -> None:
    with Cluster(n=2) as rc:
        pid = rc.hub_status()["engines"][1]["pid"]
        ar = rc[1].apply_async(lambda: __import__("time").sleep(60))
        wait_until(lambda: rc.queue_status()[1]["queue"] == 1, timeout=10)
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(EngineError, match=rf"engine 1 died while running task {ar.msg_ids[0]}"):
            ar.get(timeout=10)
        wait_until(lambda: rc.ids == [0], timeout=5)
        assert time.monotonic() - started < 5
        assert rc[0].apply_sync(lambda: "still serving") == "still serving"


def test_a_silent_engine_is_declared_dead_by_heartbeat() -> None:
    cluster = Cluster(n=1, heartbeat_period=0.1, heartbeat_misses=3)
    with cluster as rc:
        pid = rc.hub_status()["engines"][0]["pid"]
        os.kill(pid, signal.SIGSTOP)  # alive but silent: only the heartbeat can tell
        try:
            wait_until(lambda: rc.ids == [], timeout=5)
        finally:
            os.kill(pid, signal.SIGKILL)


def test_cluster_stops_every_process_after_an_exception_in_the_with() -> None:
    cluster = Cluster(n=2)
    with pytest.raises(ValueError, match="inside"), cluster as rc:
        pids = [info["pid"] for info in rc.hub_status()["engines"].values()]
        controller = cluster.controller_process
        assert controller is not None
        pids.append(controller.pid)
        raise ValueError("inside the with")
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=10)


@pytest.fixture
def profile_home(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "ACTORCLUSTER_DIR": str(tmp_path / "home")}
    yield env
    subprocess.run(
        [sys.executable, "-m", "actorcluster.cli", "stop", "--timeout", "10"],
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actorcluster.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_actorclusterd_start_status_stop(
    profile_home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started = _cli(profile_home, "start", "-n", "2", "--daemonize")
    assert started.returncode == 0, started.stderr
    assert "engines [0, 1]" in started.stdout

    again = _cli(profile_home, "start", "-n", "2", "--daemonize")
    assert again.returncode == 1
    assert "already running" in again.stderr

    monkeypatch.setenv("ACTORCLUSTER_DIR", profile_home["ACTORCLUSTER_DIR"])
    with Client() as rc:
        assert rc.ids == [0, 1]
        assert rc[:].apply_sync(lambda: 6 * 7) == [42, 42]
        pids = [info["pid"] for info in rc.hub_status()["engines"].values()] + [
            rc.hub_status()["pid"]
        ]
        security = Path(profile_home["ACTORCLUSTER_DIR"]) / "profile_default" / "security"
        assert {p.stat().st_mode & 0o777 for p in security.iterdir()} == {0o600}

    status = _cli(profile_home, "status")
    assert status.returncode == 0, status.stderr
    assert "2 engines" in status.stdout

    stopped = _cli(profile_home, "stop")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not any(_alive(p) for p in pids), timeout=10)
    assert _cli(profile_home, "status").returncode == 1


@pytest.mark.parametrize("command", ["start", "status", "stop", "controller", "engine"])
def test_every_command_explains_itself(command: str) -> None:
    result = _cli(dict(os.environ), command, "--help")
    assert result.returncode == 0
    assert "usage: actorclusterd" in result.stdout


def test_shutdown_of_one_engine_then_of_the_whole_cluster() -> None:
    cluster = Cluster(n=2)
    with cluster as rc:
        pids = {i: info["pid"] for i, info in rc.hub_status()["engines"].items()}
        rc.shutdown(targets=[1], block=True)
        wait_until(lambda: rc.ids == [0], timeout=10)
        wait_until(lambda: not _alive(pids[1]), timeout=10)
        controller = cluster.controller_process
        assert controller is not None
        rc.shutdown(hub=True)
        assert controller.wait(timeout=15) == 0
        wait_until(lambda: not _alive(pids[0]), timeout=10)


def test_killing_the_owner_of_a_cluster_takes_its_processes_along(tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(
        "import os, sys\n"
        "from actorcluster import Cluster\n"
        "c = Cluster(n=1).start()\n"
        "rc = c.connect_client()\n"
        "print(c.controller_process.pid, rc.hub_status()['engines'][0]['pid'], flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    pids: list[int] = []
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2
        owner.kill()
        owner.wait(timeout=10)
        wait_until(lambda: not any(_alive(p) for p in pids), timeout=15)
    finally:
        if owner.poll() is None:
            owner.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_an_engine_started_on_its_own_joins_and_leaves_when_its_controller_stays_away() -> None:
    cluster = Cluster(n=0)
    with cluster as rc:
        assert cluster._dir is not None
        engine = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "actorcluster.cli",
                "engine",
                "--file",
                str(cluster._dir / "actorcluster-engine.json"),
                *("--reconnect", "1"),  # wait a second for a restart that never comes
            ]
        )
        try:
            rc.wait_for_engines(1, timeout=30)
            assert rc[0].apply_sync(lambda: "joined") == "joined"
            controller = cluster.controller_process
            assert controller is not None
            os.kill(controller.pid, signal.SIGKILL)  # the engine's watch on the hub fires
            assert engine.wait(timeout=15) == 0
        finally:
            if engine.poll() is None:
                engine.kill()
                engine.wait()
