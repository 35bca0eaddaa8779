"""Shared fixtures: peer processes started and stopped by pid, bounded waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pykka
import pytest
from actorcluster.transport import actor_of
from actorcluster.transport._inbox import FdReady

from actorcluster import Client, Cluster

ROOT = Path(__file__).resolve().parent.parent


def wait_until(
    condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Poll `condition` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)  # bounded poll of a condition, not a wait for an event


@contextmanager
def actor_stuck(ref: pykka.ActorRef[Any]) -> Iterator[None]:
    """Keep a socket actor's thread busy (as with a burst of messages) inside the block."""
    release, stuck = threading.Event(), threading.Event()

    def hold() -> None:
        stuck.set()
        release.wait(30)

    ref.tell(FdReady(hold))
    assert stuck.wait(10)
    try:
        yield
    finally:
        release.set()


def executors_of(rc: Client) -> list[str]:
    """Where the executors of `rc`'s engines listen, as its I/O actor knows them."""
    return list(actor_of(rc._io).executors.values())


def io_thread_stuck(rc: Client) -> AbstractContextManager[None]:
    """Keep the client's I/O thread busy (as with a burst of results) inside the block."""
    return actor_stuck(rc._io)


class Peer:
    """A peer process running `tests.transport.peer`, stopped by pid at teardown."""

    def __init__(self, key: bytes) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from tests.transport.peer import main; main()", key.decode()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        assert self.address.startswith("actor://"), f"peer did not start: {self.address!r}"
        self.node = self.address.split("/")[2]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


class Gate:
    """Where a task on an engine (`through_gate`) waits until the test opens it: an event
    across processes, over a Unix socket, with no polling."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "gate")
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(self.path)
        self._listener.listen(8)
        self._tasks: list[socket.socket] = []

    def wait_for_task(self, timeout: float = 10.0) -> None:
        """Return once one more task arrived at the gate (it is running)."""
        self._listener.settimeout(timeout)
        self._tasks.append(self._listener.accept()[0])

    def open(self) -> None:
        """Let the tasks waiting at the gate finish (those whose engine died are gone);
        the gate stays for the next ones."""
        assert self._tasks, "no task arrived at the gate"
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            try:
                task.sendall(b"go")
            except OSError:
                pass
            task.close()

    def close(self) -> None:
        for s in [*self._tasks, self._listener]:
            s.close()


def gated_pid(path: str) -> int:
    """A task: pass the gate at `path`, then answer the pid it ran in."""
    through_gate(path)
    return os.getpid()


def through_gate(path: str) -> str:
    """A task: arrive at the gate at `path`, then wait (60 s at most) until it opens."""
    with socket.socket(socket.AF_UNIX) as gate:
        gate.settimeout(60)
        gate.connect(path)
        gate.recv(2)
    return "through"


@pytest.fixture
def engine_gate(tmp_path: Path) -> Iterator[Gate]:
    """A `Gate` in the test's folder, closed at teardown."""
    gate = Gate(tmp_path)
    try:
        yield gate
    finally:
        gate.close()


@pytest.fixture
def key() -> bytes:
    return b"test-key-0123456789"


@pytest.fixture
def peer(key: bytes) -> Iterator[Peer]:
    p = Peer(key)
    try:
        yield p
    finally:
        p.kill()


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    """Stop every actor a test started and left running, so no thread outlives its test."""
    before = set(pykka.ActorRegistry.get_all())
    yield
    for ref in pykka.ActorRegistry.get_all():
        if ref not in before:
            ref.stop(block=True, timeout=5)


@pytest.fixture(scope="module")
def inprocess() -> Iterator[Cluster]:
    """An in-process cluster of two engines, shared by a module's tests."""
    cluster = Cluster(n=2, mode="inprocess").start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def processes() -> Iterator[Cluster]:
    """A cluster of two engine processes, shared by a module's tests."""
    cluster = Cluster(n=2).start()
    try:
        yield cluster
    finally:
        cluster.stop()


MODES = ["inprocess", pytest.param("processes", marks=pytest.mark.slow)]


def cluster_client(mode: str, n: int) -> Iterator[Client]:
    """A client of a cluster of `n` engines in `mode` ("inprocess", "processes"), stopped
    at the end (for module fixtures parametrized over `MODES`)."""
    with Cluster(n=n, mode=mode) as rc:
        rc.wait_for_engines(n, timeout=30)
        yield rc


def _client(cluster: Cluster) -> Iterator[Client]:
    rc = cluster.connect_client()
    rc.wait_for_engines(2, timeout=30)
    rc[:].clear(block=True)
    try:
        yield rc
    finally:
        rc.close()


@pytest.fixture
def rc(inprocess: Cluster) -> Iterator[Client]:
    """A fresh client of the module's in-process cluster, its engines' namespaces cleared."""
    yield from _client(inprocess)


@pytest.fixture
def prc(processes: Cluster) -> Iterator[Client]:
    """A fresh client of the module's process cluster, its engines' namespaces cleared."""
    yield from _client(processes)
