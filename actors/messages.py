"""The messages of a cluster: registration, tasks and their results, control, events.

Commands are imperative (`SubmitTask`), events past tense (`EngineDied`). They hold plain
data and addresses; user functions and values travel inside as opaque `Payload`s that the
controller forwards without deserializing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from actorcluster.transport import Message, Payload, Received

# -- registration ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """An engine or client introduces its route to a controller actor (an ask)."""

    uuid: str


@dataclass(frozen=True, kw_only=True)
class RegisterEngine(Message):
    """An engine asks the Hub for an id; answered with `EngineConfig`."""

    uuid: str
    node: str
    pid: int
    hostname: str
    id: int = -1  # the id it had before its controller restarted (-1: any)
    executor: str = ""  # the node its executor listens at (requests may go straight there)


@dataclass(frozen=True, kw_only=True)
class EngineConfig(Message):
    """The Hub's answer to `RegisterEngine`."""

    id: int
    heartbeat_period: float


@dataclass(frozen=True, kw_only=True)
class ConnectClient(Message):
    """A client asks for everything it needs to work; answered with `ClientConfig`."""

    session: str
    node: str


@dataclass(frozen=True, kw_only=True)
class ClientConfig(Message):
    """The Hub's answer to `ConnectClient`."""

    mux: str
    task: str
    db: str  # the DB writer ("" when the cluster keeps no task database)
    engines: dict[int, str]
    nodes: dict[int, str]  # where each engine listens (clients send it requests there)
    executors: dict[int, str]  # where each engine's executor listens (blocking calls go there)
    started: float
    seq: int


@dataclass(frozen=True, kw_only=True)
class EngineRegistered(Message):
    """Published: an engine joined (`seq` orders notifications and snapshots)."""

    id: int
    uuid: str
    node: str
    seq: int
    epoch: float  # when the Hub started: a restarted Hub counts `seq` anew
    executor: str = ""  # where its executor listens


@dataclass(frozen=True, kw_only=True)
class EngineUnregistered(Message):
    """Published: an engine left or died."""

    id: int
    uuid: str
    reason: str
    seq: int
    epoch: float


# -- tasks ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Request(Message):
    """What every request carries: its id, the client to answer, the engine to run on."""

    msg_id: str
    client: str
    engine: int = -1
    reply: str = ""  # where the engine sends the result (the relay when empty)
    submitted: float = 0.0  # when its client submitted it (time.time(); 0: unknown)
    # sent by the client straight to the engine, and a copy to the relay, which records
    # it but does not forward it; the engine answers the client and copies the relay
    direct: bool = False
    bulk: int = 0  # bytes of payload not in this (the relay's) copy: they went to the engine
    # (connection identity, cid): a success is answered on the client's own connection to
    # the engine's executor with that identity, as the answer to ask `cid` (a blocking call)
    answer: tuple[str, str] | None = None


@dataclass(frozen=True, kw_only=True)
class Apply(_Request):
    """Run `fn(*args, **kwargs)` on an engine; the payload holds (fn, args, kwargs).

    `placed`: a load-balanced task its client sent straight to this engine, which it saw
    idle (a blocking call), with a copy to the scheduler (`reply`): an engine that is busy
    when it reads it sends it back (`Bounced`) for the scheduler to place.
    """

    payload: Payload
    placed: bool = False


@dataclass(frozen=True, kw_only=True)
class Execute(_Request):
    """Run `code` in the engine's namespace."""

    code: str


@dataclass(frozen=True, kw_only=True)
class Push(_Request):
    """Update the engine's namespace with the dict in `payload`."""

    payload: Payload


@dataclass(frozen=True, kw_only=True)
class Pull(_Request):
    """Return the values of `names` from the engine's namespace (one name: its value)."""

    names: tuple[str, ...]
    single: bool


@dataclass(frozen=True, kw_only=True)
class Abort(_Request):
    """Abort the requests `msg_ids` on the engine if they have not started (also those
    still unread: they are dropped when read), and with `queued` every request queued
    there now. The running request, and unnamed ones that come later, are never touched."""

    msg_ids: tuple[str, ...] = ()
    queued: bool = False


@dataclass(frozen=True, kw_only=True)
class Clear(_Request):
    """Reset the engine's namespace (after the request running now)."""


@dataclass(frozen=True, kw_only=True)
class ShutdownEngine(_Request):
    """Stop the engine; queued requests are aborted."""


Request = Apply | Execute | Push | Pull | Abort | Clear | ShutdownEngine
Task = Apply | Execute | Push | Pull  # requests that are tasks: recorded, unlike control
Queued = Apply | Execute | Push | Pull | Clear


@dataclass(frozen=True, kw_only=True)
class DependencySpec(Message):
    """Graph dependencies as they travel with a task: the msg_ids it waits for, whether all
    or any one of them, and whether a success, a failure or both count (the client's
    `Dependency` made plain)."""

    ids: frozenset[str]
    all: bool = True
    success: bool = True
    failure: bool = False

    def _counting(self, completed: set[str], failed: set[str]) -> set[str]:
        return (completed if self.success else set()) | (failed if self.failure else set())

    def check(self, completed: set[str], failed: set[str]) -> bool:
        """Whether the task may run, given the msg_ids that completed and that failed."""
        if not self.ids:
            return True
        counting = self._counting(completed, failed)
        return self.ids <= counting if self.all else bool(self.ids & counting)

    def unreachable(self, completed: set[str], failed: set[str]) -> bool:
        """Whether the task can never run: tasks it needs finished the wrong way."""
        if not self.ids:
            return False
        wrong = (completed if not self.success else set()) | (failed if not self.failure else set())
        return bool(self.ids & wrong) if self.all else self.ids <= wrong

    def as_dict(self) -> dict[str, Any]:
        """The plain form a task record keeps."""
        return {
            "dependencies": sorted(self.ids),
            "all": self.all,
            "success": self.success,
            "failure": self.failure,
        }

    @classmethod
    def of(cls, spec: DependencySpec | dict[str, Any] | None) -> DependencySpec | None:
        """`spec` as a DependencySpec (a journal of an earlier version holds the plain form)."""
        if isinstance(spec, DependencySpec):
            return spec
        if not spec:
            return None
        ids = frozenset(spec["dependencies"])
        return cls(ids=ids, all=spec["all"], success=spec["success"], failure=spec["failure"])


@dataclass(frozen=True, kw_only=True)
class SubmitTask(Message):
    """A client asks the scheduler to run `request` on some engine it chooses.

    `targets` limits the engines (None: any); `retries` re-runs a failed task elsewhere;
    a task still waiting for an engine after `timeout` seconds fails with `DependencyTimeout`.
    """

    request: Apply
    targets: tuple[int, ...] | None = None
    retries: int = 0
    timeout: float | None = None  # seconds it may wait for an engine
    after: DependencySpec | None = None  # run once these finished
    follow: DependencySpec | None = None  # ... and where these ran
    # what the client knows of those dependencies (msg_id, engine, status; "" = pending):
    # the scheduler may not have heard yet of a direct task the client already has
    known: tuple[tuple[str, int, str], ...] = ()
    placed: int = -1  # the engine its client sent it to (`Apply.placed`); this is a copy


@dataclass(frozen=True, kw_only=True)
class Reclaim(Message):
    """Client -> engine: my task placed here (`Apply.placed`) is not answered yet; if you
    are busy with another, send it back (`Bounced`) before you run it."""

    msg_id: str


@dataclass(frozen=True, kw_only=True)
class Bounced(Message):
    """Engine -> scheduler: a task its client placed here (`Apply.placed`) found the engine
    busy and was not run; place it elsewhere."""

    msg_id: str
    engine: int


@dataclass(frozen=True, kw_only=True)
class AbortTasks(Message):
    """A client asks the scheduler to abort these load-balanced tasks if not yet run."""

    msg_ids: tuple[str, ...]


BULK_THRESHOLD = 2**20  # bytes: data this large is recorded by its size, not kept
# load-balanced tasks an engine may hold at once: enough to keep it busy between round trips
# (no-op tasks/s on 2 engines, measured: 1: ~1,500, 4: ~4,700, 8: ~5,800, 16: ~6,600), few
# enough that a slow engine does not hoard work
HWM = 8


def answers_client(request: Request, status: str) -> bool:
    """Whether the engine answers `request`'s client itself (copying the relay or the
    scheduler): for a direct request, yes; for a load-balanced task (`reply`, the
    scheduler), only a success: a failure may run again elsewhere."""
    return request.direct and (status == "ok" or not request.reply)


def relay_copy(request: Request, bulk_threshold: int) -> Request:
    """The relay's copy of a direct request: without a payload of `bulk_threshold` bytes
    or more (0: always with it), whose size it records instead."""
    if bulk_threshold > 0 and isinstance(request, Apply | Push):
        size = request.payload.nbytes
        if size >= bulk_threshold:
            return replace(request, payload=Payload(b""), bulk=size)
    return request


@dataclass(frozen=True, kw_only=True)
class TaskResult(Message):
    """The outcome of a request: a value (serialized) or an error, and its metadata."""

    msg_id: str
    engine: int
    status: str
    client: str = ""  # the node of the client that asked (a relay that restarted forgets)
    value: Payload | None = None
    error: BaseException | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    direct: bool = False  # the engine sent it to the client too: this copy is a record
    bulk: int = 0  # bytes of value that went straight to the client; this copy has none
    placed: bool = False  # of a request its client placed: may beat the scheduler's copy


def not_run(
    msg_id: str,
    engine: int,
    status: str,
    error: BaseException | None = None,
    *,
    client: str = "",
    direct: bool = False,
    engine_uuid: str | None = None,
) -> TaskResult:
    """The result of a request that did not run (aborted, failed before it started, or
    a control request's answer): it never started, and completed now."""
    metadata: dict[str, Any] = {"started": None, "completed": time.time()}
    if engine_uuid is not None:
        metadata["engine_uuid"] = engine_uuid
    return TaskResult(
        msg_id=msg_id,
        engine=engine,
        status=status,
        client=client,
        direct=direct,
        error=error,
        metadata=metadata,
    )


# -- questions ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Question(Message):
    """What every question to the task database or the Hub carries: what its asker already
    holds, so that the answer reflects it (read your writes), however late the copies of
    requests and results reach the controller (see `actors.questions`).

    `known`: msg_ids the asker submitted or has the result of; `finished`: those whose
    result it has and whose record the database has not confirmed (`TasksRecorded`).
    """

    known: tuple[str, ...] = ()
    finished: tuple[str, ...] = ()


# -- the hub ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class QueueStatus(Question):
    """Ask the Hub for per-engine queue counts (msg_ids, if `verbose`)."""

    engines: tuple[int, ...] | None = None
    verbose: bool = False


@dataclass(frozen=True, kw_only=True)
class HubStatus(Message):
    """Ask the Hub for its engines, uptime and counts (for `actorclusterd status`)."""


@dataclass(frozen=True, kw_only=True)
class StopController(Message):
    """Stop every engine, then the controller."""


# -- events inside the controller ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EngineAdded(Message):
    """Hub -> relay, scheduler, heart monitor: engine `id`'s actor is at `node`."""

    id: int
    uuid: str
    node: str
    executor: str = ""  # where its executor listens ("": send requests to `node`)


@dataclass(frozen=True, kw_only=True)
class EngineDied(Message):
    """Engine `id` is gone: fail what runs on it."""

    id: int
    uuid: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class HeartFailed(Message):
    """Heart monitor -> Hub: the engine `uuid` stopped answering pings."""

    uuid: str
    silent_for: float


@dataclass(frozen=True, kw_only=True)
class TasksSubmitted(Message):
    """Relay or scheduler -> Hub: these requests went to these engines (msg_id, engine, client)."""

    tasks: tuple[tuple[str, int, str], ...]
    balanced: bool = False
    unassigned: int = 0


@dataclass(frozen=True, kw_only=True)
class TasksFinished(Message):
    """Relay or scheduler -> Hub: these requests finished (msg_id, engine, status), or left
    their engine unrun (status "moved": a placed task the engine sent back)."""

    tasks: tuple[tuple[str, int, str], ...]
    balanced: bool = False
    unassigned: int = 0


# -- the task database -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TaskLog(Message):
    """Relay or scheduler -> DB writer: what happened to tasks since the last report.

    `submitted`: (time, request or task, where it came from) as it arrived; `assigned`:
    (time, msg_id, engine) when the scheduler picks an engine; `finished`: (time, result,
    where it came from) of final outcomes. Where a message came from (the bytes it arrived
    in) is None for one made in the controller.
    """

    queue: str  # "mux" (direct) or "task" (load-balanced)
    submitted: tuple[tuple[float, Request | SubmitTask, Received | None], ...] = ()
    assigned: tuple[tuple[float, str, int], ...] = ()
    finished: tuple[tuple[float, TaskResult, Received | None], ...] = ()


@dataclass(frozen=True, kw_only=True)
class TasksRecorded(Message):
    """DB writer -> client, engine: these requests and final results are in the task
    database (on disk, for a file database): the client and engine that held them for a
    restarted controller (`Redeliver`) let them go, and questions need not name them."""

    requests: tuple[str, ...] = ()
    results: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Redeliver(Message):
    """Client or engine -> DB writer of a restarted controller: the requests and results
    it held that the database had not confirmed (`TasksRecorded`). The database takes
    those it lacks, never one that would contradict a final result it holds."""

    requests: tuple[Request | SubmitTask, ...] = ()
    results: tuple[TaskResult, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Answered(Message):
    """DB writer -> engine (an ask): which of `msg_ids` has this engine answered (run, or
    aborted)? Their clients may hold the results, whose copies are on their way.
    Answered with the tuple of those."""

    msg_ids: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ReportNow(Message):
    """DB writer -> relay, scheduler: a question waits for what you hold back; report it."""


@dataclass(frozen=True, kw_only=True)
class DbQuery(Question):
    """Ask for the records matching `query` (the Mongo subset), with `keys` only."""

    query: dict[str, Any]
    keys: tuple[str, ...] | None = None


@dataclass(frozen=True, kw_only=True)
class FetchResults(Question):
    """Ask for the results of `msg_ids`; answered with `Fetched`.

    With `watch`, the results of the ones still pending are sent to the asking client
    (`actor://<client>/client`) as they finish. With `status_only`, no results, only states.
    """

    msg_ids: tuple[str, ...]
    client: str = ""
    watch: bool = False
    status_only: bool = False


@dataclass(frozen=True, kw_only=True)
class Fetched(Message):
    """The answer to `FetchResults`."""

    results: tuple[TaskResult, ...]
    pending: tuple[str, ...]
    unknown: tuple[str, ...]
    submitted: dict[str, Any] = field(default_factory=dict)  # msg_id -> datetime


@dataclass(frozen=True, kw_only=True)
class HubHistory(Question):
    """Ask for every msg_id the database holds, in order of submission."""


@dataclass(frozen=True, kw_only=True)
class PurgeRecords(Question):
    """Forget finished records: these `msg_ids`, those run on `engines` (uuids), or
    every finished one (`everything`). Nothing is removed if one of them is pending;
    answered with `Purged`."""

    msg_ids: tuple[str, ...] = ()
    engines: tuple[str, ...] = ()
    everything: bool = False


@dataclass(frozen=True, kw_only=True)
class Purged(Message):
    """The answer to `PurgeRecords`."""

    purged: int
    pending: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Resubmit(Question):
    """Ask for what it takes to run finished tasks again, under `new_ids`; answered with
    `Resubmission`. The old records are marked `resubmitted`."""

    msg_ids: tuple[str, ...]
    new_ids: tuple[str, ...]
    client: str


@dataclass(frozen=True, kw_only=True)
class Resubmission(Message):
    """The answer to `Resubmit`: the original requests (or tasks), or why not."""

    requests: tuple[Request | SubmitTask, ...] = ()
    refused: dict[str, str] = field(default_factory=dict)  # msg_id -> why
