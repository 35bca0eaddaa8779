"""The heart monitor: pings every engine's heart and reports the silent ones to the Hub."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pykka
from actorcluster.actors.messages import EngineAdded, EngineDied, HeartFailed
from actorcluster.transport import Pulse, Session, SocketActor

__all__ = ["HeartMonitor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Tick:
    pass


class HeartMonitor(SocketActor):
    """Publishes a ping every `period` seconds; an engine silent for `period * misses`
    seconds is reported to the Hub as `HeartFailed`.

    Accepts: `EngineAdded` (start watching its heart), `EngineDied` (stop). Emits:
    `HeartFailed` to the Hub. Owns: the ping PUB and the pong ROUTER (`Pulse`).

    Args:
        session: the cluster's session.
        host: the interface to bind.
        hub: the Hub to report to.
        period: seconds between pings.
        misses: pings an engine may miss before it is declared dead.
    """

    def __init__(
        self,
        session: Session,
        host: str,
        hub: pykka.ActorRef[Any],
        *,
        period: float = 1.0,
        misses: int = 3,
        ports: tuple[int, int] = (0, 0),
    ) -> None:
        super().__init__(session, name="heartmonitor")
        self.pulse = Pulse(self.inbox, host, self._pong, ports=ports)
        self.hub = hub
        self.period = period
        self.misses = misses
        self._seq = 0
        self._last: dict[str, float] = {}

    def on_start(self) -> None:
        self.call_later(0, _Tick())

    def _pong(self, heart: str, seq: int) -> None:
        if heart in self._last:
            self._last[heart] = time.monotonic()

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Tick():
                self._tick()
            case EngineAdded(uuid=uuid):
                self._last[uuid] = time.monotonic()
            case EngineDied(uuid=uuid):
                self._last.pop(uuid, None)
        return None

    def _tick(self) -> None:
        now = time.monotonic()
        limit = self.period * self.misses
        for heart, last in list(self._last.items()):
            if now - last > limit:
                del self._last[heart]
                logger.warning("engine %s missed %d heartbeats", heart, self.misses)
                self.hub.tell(HeartFailed(uuid=heart, silent_for=now - last))
        self._seq += 1
        self.pulse.beat(self._seq)
        self.call_later(self.period, _Tick())

    def _after_stop(self) -> None:
        self.pulse.close()
        super()._after_stop()
