"""Local clusters for scripts, notebooks and tests: `with Cluster(n=4) as rc: ...`."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from actorcluster.actors.messages import BULK_THRESHOLD, HWM
from actorcluster.client import Client

__all__ = ["Cluster"]

logger = logging.getLogger(__name__)


class Cluster:
    """A controller and `n` engines on this machine, stopped when done.

    `mode="processes"` (the default) runs the controller and each engine in processes of
    their own; `mode="inprocess"` runs every actor in this process (engines in threads)
    and starts in milliseconds.

    Args:
        n: number of engines.
        mode: "processes" or "inprocess".
        heartbeat_period: seconds between heartbeats.
        heartbeat_misses: heartbeats an engine may miss before it is declared dead.
        scheme: how load-balanced tasks pick an engine: leastload, lru, plainrandom, twobin,
            weighted.
        hwm: load-balanced tasks an engine may hold at once (0: no limit).
        scheduler_process: run the task scheduler in a process of its own.
        timeout: seconds to wait for the cluster to come up.
        block: the default `block` of the client's views.
        db: the task database: "memory" (the default), "none", or a folder for a durable
            file database (kept across clusters that use the same folder).
        recover: with a folder `db`, move damaged database files aside instead of failing.
        bulk_threshold: bytes from which the task database records arguments and results
            by their size, not their data (0: never).
    """

    def __init__(
        self,
        n: int = 2,
        *,
        mode: str = "processes",
        heartbeat_period: float = 1.0,
        heartbeat_misses: int = 3,
        scheme: str = "leastload",
        hwm: int = HWM,
        scheduler_process: bool = False,
        timeout: float = 30.0,
        block: bool = False,
        db: str | os.PathLike[str] = "memory",
        recover: bool = False,
        bulk_threshold: int = BULK_THRESHOLD,
    ) -> None:
        if mode not in ("processes", "inprocess"):
            raise ValueError(f"unknown mode {mode!r}: use 'processes' or 'inprocess'")
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        self.n, self.mode, self.timeout, self.block = n, mode, timeout, block
        self.heartbeat_period, self.heartbeat_misses = heartbeat_period, heartbeat_misses
        self.scheme, self.hwm, self.scheduler_process = scheme, hwm, scheduler_process
        if db in ("memory", "none"):
            self.db, self.db_dir = str(db), None
        elif db == "tinydb":
            raise ValueError("for a file task database, give its folder: Cluster(db='/path/to/db')")
        else:
            self.db, self.db_dir = "tinydb", Path(db)
        self.recover, self.bulk_threshold = recover, bulk_threshold
        self.client_info: dict[str, Any] | None = None
        self.controller_process: subprocess.Popen[bytes] | None = None
        self.engine_pids: list[int] = []
        self._controller: Any = None
        self._engines: list[Any] = []
        self._dir: Path | None = None
        self._clients: list[Client] = []

    def start(self) -> Cluster:
        """Start the controller and engines; return once every engine has registered."""
        try:
            if self.mode == "inprocess":
                self._start_inprocess()
            else:
                self._start_processes()
            with self.connect_client() as rc:
                rc.wait_for_engines(self.n, timeout=self.timeout)
                self.engine_pids = sorted(
                    {info["pid"] for info in rc.hub_status()["engines"].values()} - {os.getpid()}
                )
        except BaseException:
            self.stop()
            raise
        return self

    def add_engines(self, n: int) -> None:
        """Start `n` more engines (they register on their own)."""
        if self._controller is not None:
            from actorcluster.launcher import start_inprocess_engines

            self._engines += start_inprocess_engines(self._controller, n, self.timeout)
        elif self._dir is not None:
            from actorcluster.launcher import spawn_engine

            for _ in range(n):
                proc = spawn_engine(self._dir / "actorcluster-engine.json")
                self.engine_pids.append(proc.pid)
        else:
            raise RuntimeError("the cluster is not started; call start() first")

    def _start_inprocess(self) -> None:
        from actorcluster.actors.controller import Controller
        from actorcluster.actors.store import open_store
        from actorcluster.launcher import start_inprocess_engines
        from actorcluster.transport import Session, new_key

        store = open_store(self.db, self.db_dir, recover=self.recover)
        self._controller = Controller(
            Session(new_key().encode()),
            heartbeat_period=self.heartbeat_period,
            heartbeat_misses=self.heartbeat_misses,
            scheme=self.scheme,
            hwm=self.hwm,
            scheduler_process=self.scheduler_process,
            store=store,
            bulk_threshold=self.bulk_threshold,
        )
        self.client_info = self._controller.client_info
        self._engines = start_inprocess_engines(self._controller, self.n, self.timeout)

    def _start_processes(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="actorcluster-"))
        command = [
            sys.executable, "-m", "actorcluster.cli", "controller", "--dir", str(self._dir), "-n", str(self.n),
            "--heartbeat-period", str(self.heartbeat_period), "--heartbeat-misses", str(self.heartbeat_misses),
            "--scheme", self.scheme, "--hwm", str(self.hwm),
            *(["--scheduler-process"] if self.scheduler_process else []),
            "--db", self.db, *(["--db-dir", str(self.db_dir)] if self.db_dir else []),
            *(["--recover"] if self.recover else []),
            "--bulk-threshold", str(self.bulk_threshold),
        ]  # fmt: skip
        from actorcluster.launcher import die_with_parent

        log = open(self._dir / "controller.out", "wb")  # noqa: SIM115 - the child owns it
        self.controller_process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        log.close()
        client_file = self._dir / "actorcluster-client.json"
        deadline = time.monotonic() + self.timeout
        pause = threading.Event()
        while not client_file.exists():
            if self.controller_process.poll() is not None:
                raise RuntimeError(
                    f"the controller exited with {self.controller_process.returncode}: {self._output()}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the controller did not start within {self.timeout} s: {self._output()}"
                )
            pause.wait(0.005)  # the controller writes the file once it listens
        from actorcluster.transport import load_connection_file

        self.client_info = load_connection_file(client_file)

    def _output(self) -> str:
        if self._dir is None:
            return ""
        try:
            return (self._dir / "controller.out").read_text()[-2000:]
        except OSError:
            return ""

    def connect_client(self, timeout: float | None = None) -> Client:
        """A new client connected to this cluster (closed by `stop()`)."""
        if self.client_info is None:
            raise RuntimeError("the cluster is not started; call start() first")
        client = Client(info=self.client_info, timeout=timeout or self.timeout, block=self.block)
        self._clients.append(client)
        return client

    def stop(self) -> None:
        """Stop every engine and the controller, and close the clients; never raises."""
        for client in self._clients:
            try:
                client.close()
            except Exception:
                logger.exception("closing a client failed")
        self._clients.clear()
        if self._controller is not None:
            for ref in self._engines:
                if ref.is_alive():
                    ref.stop(timeout=5)
            self._controller.stop(timeout=1)
            self._controller = None
        proc = self.controller_process
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.controller_process = None
        for pid in self.engine_pids:
            _kill(pid)
        self.engine_pids = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Client:
        self.start()
        return self.connect_client()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill(pid: int) -> None:
    """Make sure engine process `pid` is gone (the controller normally stopped it)."""
    try:
        proc = psutil.Process(pid)
        if "actorcluster.cli" in " ".join(proc.cmdline()):
            proc.kill()
            proc.wait(timeout=5)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass
