"""The controller: Hub, heart monitor and relay of one cluster, started together."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pykka
from actorcluster.actors.dbwriter import DBWriter, Reporters
from actorcluster.actors.heartmonitor import HeartMonitor
from actorcluster.actors.hub import Hub
from actorcluster.actors.messages import BULK_THRESHOLD, HWM, ShutdownEngine
from actorcluster.actors.relay import MuxRelay
from actorcluster.actors.scheduler import TaskScheduler
from actorcluster.actors.store import TaskStore
from actorcluster.transport import RemoteRef, Session, actor_of

__all__ = ["Controller", "die_with_parent"]

logger = logging.getLogger(__name__)


class Controller:
    """Start and stop the controller's actors in this process.

    Args:
        session: the cluster's session (its key signs everything).
        host: the interface to listen on.
        heartbeat_period: seconds between heartbeats.
        heartbeat_misses: heartbeats an engine may miss before it is declared dead.
        scheme: how the task scheduler picks engines (see `actorcluster.actors.schemes`).
        hwm: tasks an engine may hold at once (0: no limit).
        scheduler_process: run the task scheduler in a process of its own (its own GIL).
        store: the task database (None: keep none). The controller's DB writer owns it.
        ports: the ports to bind, by role (`hub`, `notification`, `relay`, `scheduler`,
            `db`, `ping`, `pong`); missing ones are chosen by the system. A controller
            restarted on the ports of its previous run is found again by its engines and
            clients.
        bulk_threshold: the controller's copies of arguments and results of at least this
            many bytes have their size, not their data (0: always the data).
    """

    def __init__(
        self,
        session: Session,
        host: str = "127.0.0.1",
        *,
        heartbeat_period: float = 1.0,
        heartbeat_misses: int = 3,
        scheme: str = "leastload",
        hwm: int = HWM,
        scheduler_process: bool = False,
        store: TaskStore | None = None,
        bulk_threshold: int = BULK_THRESHOLD,
        ports: dict[str, int] | None = None,
    ) -> None:
        self.session = session
        port = (ports or {}).get
        self.scheduler_process: subprocess.Popen[str] | None = None
        self.stop_requested = threading.Event()
        self.hub_ref = Hub.start(
            session,
            host,
            heartbeat_period=heartbeat_period,
            on_stop_requested=self.stop_requested.set,
            port=port("hub", 0),
            notification_port=port("notification", 0),
        )
        self.hub: Hub = actor_of(self.hub_ref)
        self.db_ref = (
            None if store is None else DBWriter.start(session, host, store, port=port("db", 0))
        )
        db_address = "" if self.db_ref is None else actor_of(self.db_ref).address
        self.monitor_ref = HeartMonitor.start(
            session,
            host,
            self.hub_ref,
            period=heartbeat_period,
            misses=heartbeat_misses,
            ports=(port("ping", 0), port("pong", 0)),
        )
        if scheduler_process:  # the same actor, in a process (and GIL) of its own
            self.scheduler_process, address = _spawn_scheduler(
                session, host, self.hub.address, db_address, scheme, hwm, port("scheduler", 0)
            )
            self.scheduler_ref: Any = RemoteRef(address, session)
        else:
            self.scheduler_ref = TaskScheduler.start(
                session,
                host,
                self.hub_ref,
                scheme=scheme,
                hwm=hwm,
                db=self.db_ref,
                port=port("scheduler", 0),
            )
            address = actor_of(self.scheduler_ref).address
        # the relay tells the scheduler of direct tasks too: `after` may name them
        self.relay_ref = MuxRelay.start(
            session, host, self.hub_ref, self.scheduler_ref, db=self.db_ref, port=port("relay", 0)
        )
        monitor: HeartMonitor = actor_of(self.monitor_ref)
        relay: MuxRelay = actor_of(self.relay_ref)
        if self.db_ref is not None:  # they report to it (and interrupted tasks run again)
            self.db_ref.tell(Reporters(relay.address, address))
        addresses = {"mux": relay.address, "task": address, "db": db_address}
        self.hub.connect(
            self.relay_ref, self.monitor_ref, self.scheduler_ref, addresses, db=self.db_ref
        )
        key = session.key.decode()
        self.client_info: dict[str, Any] = {
            "key": key,
            "signature_scheme": "hmac-sha256",
            "hub": self.hub.address,
            "notification": self.hub.publisher.endpoint,
            "bulk_threshold": bulk_threshold,
            "scheme": scheme,  # leastload: a blocking call may go to an idle engine directly
        }
        self.engine_info: dict[str, Any] = {
            **self.client_info,
            "relay": relay.address,
            "scheduler": address,
            "db": db_address,
            "ping": monitor.pulse.ping_endpoint,
            "pong": monitor.pulse.pong_endpoint,
        }

    def stop(self, timeout: float = 5.0) -> None:
        """Tell every engine to shut down, then stop the controller's actors."""
        engines = list(self.hub.engines)
        for engine in engines:
            self.relay_ref.tell(
                ShutdownEngine(msg_id=f"shutdown-{engine}-{time.time()}", client="", engine=engine)
            )
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while self.hub.engines and time.monotonic() < deadline:
            pause.wait(0.02)  # engine processes exit and their pidfds unregister them
        if self.scheduler_process is not None:
            _end(self.scheduler_process)
        else:
            _stop(self.scheduler_ref)
        for ref in (self.relay_ref, self.monitor_ref, self.hub_ref):
            _stop(ref)
        if self.db_ref is not None:
            _stop(self.db_ref)  # last: it hears what the others report as they stop


def _stop(ref: pykka.ActorRef[Any]) -> None:
    try:
        ref.stop(timeout=5)
    except pykka.Timeout:
        logger.warning("%s did not stop within 5 s", ref)


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to SIGTERM this process when its parent (the controller) dies."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn_scheduler(
    session: Session, host: str, hub: str, db: str, scheme: str, hwm: int, port: int
) -> tuple[subprocess.Popen[str], str]:
    """Start `actorclusterd scheduler`; the key goes by stdin (argv is visible to all)."""
    command = [sys.executable, "-m", "actorcluster.cli", "scheduler", "--hub", hub, "--ip", host]
    command += ["--scheme", scheme, "--hwm", str(hwm), *(["--db", db] if db else [])]
    command += ["--port", str(port)]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(session.key.decode() + "\n")
    proc.stdin.flush()
    address = proc.stdout.readline().strip()
    if not address.startswith("actor://"):
        proc.kill()
        raise RuntimeError(f"the scheduler process did not start (said {address!r})")
    return proc, address


def _end(proc: subprocess.Popen[str]) -> None:
    """Stop a scheduler process: closing its stdin asks it to stop."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
