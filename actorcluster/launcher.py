"""Starting the parts of a cluster: a controller in this process, engine processes."""

from __future__ import annotations

import gc
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from actorcluster.actors.controller import Controller, die_with_parent
from actorcluster.actors.engine import Engine
from actorcluster.transport import Session, actor_of, load_connection_file

__all__ = [
    "die_with_parent",
    "run_controller",
    "run_engine",
    "run_scheduler",
    "spawn_engine",
    "start_inprocess_engines",
]

logger = logging.getLogger(__name__)


def spawn_engine(engine_file: Path, log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """Start an engine process that joins the cluster of `engine_file`."""
    out = open(log_file, "ab") if log_file else None  # noqa: SIM115 - closed once handed over
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "actorcluster.cli", "engine", "--file", str(engine_file)],
            stdin=subprocess.DEVNULL,
            stdout=out or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if out else subprocess.DEVNULL,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
    finally:
        if out is not None:
            out.close()  # the child has its own copy of the descriptor


def _freeze_heap() -> None:
    """Leave what start-up made (modules, classes, actors) out of the garbage collector's
    full collections: they live as long as the process, and scanning them again at every
    full collection cost a controller 1.5-2 us per task. Garbage first, so none is kept.
    (What the engine's user code makes later is collected as usual.)"""
    gc.collect()
    gc.freeze()


def run_controller(controller: Controller, engines: list[subprocess.Popen[bytes]]) -> None:
    """Serve until asked to stop (`StopController`, SIGTERM or SIGINT), then stop everything."""
    stop = controller.stop_requested

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal %d: stopping", signum)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    _freeze_heap()
    while not stop.wait(0.5):
        pass
    controller.stop()
    for proc in engines:
        if proc.poll() is None:
            proc.terminate()
    for proc in engines:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_engine(engine_file: Path, reconnect_for: float = 0.0) -> int:
    """Run an engine in this process until it is shut down, or its controller went away
    and did not come back within `reconnect_for` seconds."""
    info = load_connection_file(engine_file)
    session = Session(str(info["key"]).encode())
    ref = Engine.start(session, info, watch_hub=True, reconnect_for=reconnect_for)
    engine: Engine = actor_of(ref)
    signal.signal(signal.SIGTERM, lambda *_: engine.executor.stop())
    _freeze_heap()
    stopped = threading.Event()
    engine.add_stop_callback(stopped.set)  # once its last messages (answers) are sent
    engine.executor.run()  # user code runs in the main thread
    if ref.is_alive():
        ref.stop(block=True, timeout=5)
    stopped.wait(5)
    return 0


def start_inprocess_engines(controller: Controller, n: int, timeout: float) -> list[Any]:
    """Start `n` engines in threads of this process; wait until they registered."""
    refs = [
        Engine.start(controller.session, controller.engine_info, executor_thread=True)
        for _ in range(n)
    ]
    for ref in refs:
        if not actor_of(ref).registered.wait(timeout):
            raise TimeoutError(f"an in-process engine did not register within {timeout} s")
    return refs


def run_scheduler(
    hub: str, host: str, scheme: str, hwm: int, db: str | None = None, port: int = 0
) -> int:
    """Run a task scheduler in this process: key from stdin, its address to stdout.

    It stops when stdin closes (its controller stopped, or died).
    """
    from actorcluster.actors.scheduler import TaskScheduler
    from actorcluster.transport import RemoteRef

    session = Session(sys.stdin.readline().strip().encode())
    ref = TaskScheduler.start(
        session,
        host,
        RemoteRef(hub, session),
        scheme=scheme,
        hwm=hwm,
        db=RemoteRef(db, session) if db else None,
        port=port,
    )
    print(actor_of(ref).address, flush=True)
    _freeze_heap()
    sys.stdin.read()
    ref.stop(timeout=5)
    return 0
