"""The controller: Hub, heart monitor and relay of one cluster, started together."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pykka
from actorcluster.actors.heartmonitor import HeartMonitor
from actorcluster.actors.hub import Hub
from actorcluster.actors.messages import ShutdownEngine
from actorcluster.actors.relay import MuxRelay
from actorcluster.actors.scheduler import TaskScheduler
from actorcluster.transport import Session, actor_of

__all__ = ["Controller"]

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
    """

    def __init__(
        self,
        session: Session,
        host: str = "127.0.0.1",
        *,
        heartbeat_period: float = 1.0,
        heartbeat_misses: int = 3,
        scheme: str = "leastload",
        hwm: int = 4,
    ) -> None:
        self.session = session
        self.stop_requested = threading.Event()
        self.hub_ref = Hub.start(
            session,
            host,
            heartbeat_period=heartbeat_period,
            on_stop_requested=self.stop_requested.set,
        )
        self.hub: Hub = actor_of(self.hub_ref)
        self.monitor_ref = HeartMonitor.start(
            session, host, self.hub_ref, period=heartbeat_period, misses=heartbeat_misses
        )
        self.scheduler_ref = TaskScheduler.start(
            session, host, self.hub_ref, scheme=scheme, hwm=hwm
        )
        # the relay tells the scheduler of direct tasks too: `after` may name them
        self.relay_ref = MuxRelay.start(session, host, self.hub_ref, self.scheduler_ref)
        monitor: HeartMonitor = actor_of(self.monitor_ref)
        relay: MuxRelay = actor_of(self.relay_ref)
        scheduler: TaskScheduler = actor_of(self.scheduler_ref)
        addresses = {"mux": relay.address, "task": scheduler.address}
        self.hub.connect(self.relay_ref, self.monitor_ref, self.scheduler_ref, addresses)
        key = session.key.decode()
        self.client_info: dict[str, Any] = {
            "key": key,
            "signature_scheme": "hmac-sha256",
            "hub": self.hub.address,
            "notification": self.hub.publisher.endpoint,
        }
        self.engine_info: dict[str, Any] = {
            **self.client_info,
            "relay": relay.address,
            "scheduler": scheduler.address,
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
        for ref in (self.scheduler_ref, self.relay_ref, self.monitor_ref, self.hub_ref):
            _stop(ref)


def _stop(ref: pykka.ActorRef[Any]) -> None:
    try:
        ref.stop(timeout=5)
    except pykka.Timeout:
        logger.warning("%s did not stop within 5 s", ref)
