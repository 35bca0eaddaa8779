"""Task records (the spec's TaskRecord) made from the messages that pass the controller,
and the messages made again from records: a result for `get_result`, a request for
`resubmit`."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

from actorcluster.actors.messages import (
    Apply,
    DependencySpec,
    Execute,
    Pull,
    Push,
    Request,
    SubmitTask,
    TaskResult,
)
from actorcluster.transport import Payload

from actorcluster.error import ActorClusterError, RemoteError

__all__ = ["as_bytes", "finished_fields", "request_of", "result_of", "submitted_record"]

_TYPES = {
    Apply: "apply_request",
    Execute: "execute_request",
    Push: "push_request",
    Pull: "pull_request",
}


def _date(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _stamp(date: datetime | None) -> float | None:
    return None if date is None else date.timestamp()


def as_bytes(buffers: list[Any] | None) -> list[bytes]:
    """Buffers as bytes (those of messages received in this process are zmq frames)."""
    return [b if isinstance(b, bytes) else bytes(b) for b in buffers or ()]


def _content(request: Request) -> dict[str, Any]:
    match request:
        case Execute(code=code):
            return {"code": code}
        case Pull(names=names, single=single):
            return {"names": list(names), "single": single}
    return {}


def submitted_record(
    when: float, item: Request | SubmitTask, queue: str, engine_uuid: str | None
) -> dict[str, Any]:
    """The record of a request (direct) or task (load-balanced) just submitted."""
    request = item.request if isinstance(item, SubmitTask) else item
    date = _date(request.submitted or when)  # the client's clock: copies may come late
    payload = getattr(request, "payload", None)
    if isinstance(item, SubmitTask):
        targets = None if item.targets is None else list(item.targets)
        metadata: dict[str, Any] = {"targets": targets, "retries": item.retries}
        after, follow = DependencySpec.of(item.after), DependencySpec.of(item.follow)
        metadata.update(
            timeout=item.timeout,
            after=None if after is None else after.as_dict(),
            follow=None if follow is None else follow.as_dict(),
        )
    else:
        metadata = {"targets": [request.engine]}
    if request.bulk:
        metadata["bulk"] = request.bulk  # the payload went straight to the engine
        payload = None
    return {
        "msg_id": request.msg_id,
        "header": {
            "msg_id": request.msg_id,
            "msg_type": _TYPES.get(type(request), f"{type(request).__name__.lower()}_request"),
            "session": request.client,
            "engine": request.engine,
            "date": date,
        },
        "content": _content(request),
        "metadata": metadata,
        "buffers": [] if payload is None else [payload.data, *payload.buffers],
        "submitted": date,
        "client_uuid": request.client,
        "engine_uuid": engine_uuid,
        "started": None,
        "completed": None,
        "resubmitted": None,
        "received": None,
        "result_header": None,
        "result_content": None,
        "result_buffers": None,
        "result_metadata": None,
        "queue": queue,
        "stdout": None,
        "stderr": None,
    }


def finished_fields(when: float, result: TaskResult, engine_uuid: str | None) -> dict[str, Any]:
    """The fields a final result sets on its record."""
    meta = result.metadata
    completed = _date(meta.get("completed") or when)
    content: dict[str, Any] = {"status": result.status}
    error = result.error
    if error is not None:
        content["ename"] = getattr(error, "ename", type(error).__name__)
        content["evalue"] = getattr(error, "evalue", str(error))
        content["traceback"] = getattr(error, "traceback", "")
        content["engine_info"] = dict(getattr(error, "engine_info", {}))
        buffers: list[Any] = [pickle.dumps(error, protocol=5)]
    else:
        value = result.value
        buffers = [] if value is None else [value.data, *value.buffers]
    result_metadata = {"engine_uuid": meta.get("engine_uuid") or engine_uuid}
    if result.bulk:
        result_metadata["bulk"] = result.bulk  # the value went straight to the client
    return {
        "engine_uuid": meta.get("engine_uuid") or engine_uuid,
        "started": _date(meta.get("started")),
        "completed": completed,
        "received": _date(when),
        "result_header": {
            "msg_id": result.msg_id,
            "msg_type": "apply_reply",
            "status": result.status,
            "engine": result.engine,
            "date": completed,
        },
        "result_content": content,
        "result_buffers": buffers,
        "result_metadata": result_metadata,
        "stdout": meta.get("stdout", ""),
        "stderr": meta.get("stderr", ""),
    }


def result_of(record: dict[str, Any]) -> TaskResult:
    """The `TaskResult` a finished record holds."""
    content = record.get("result_content") or {}
    header = record.get("result_header") or {}
    status = content.get("status", "error")
    buffers = as_bytes(record["result_buffers"])
    value, error = None, None
    bulk = (record.get("result_metadata") or {}).get("bulk")
    if status == "ok" and bulk:
        status = "error"
        error = ActorClusterError(
            f"the result of task {record['msg_id']} ({bulk} bytes) went straight to the "
            "client that submitted it and is not kept by the controller; start the "
            "cluster with a higher --bulk-threshold to keep results this large"
        )
    elif status == "ok":
        value = Payload(buffers[0], tuple(buffers[1:])) if buffers else None
    elif buffers:
        error = pickle.loads(buffers[0])  # made by `finished_fields` from a verified message
    else:
        error = RemoteError(content.get("ename", "Error"), content.get("evalue", ""))
    return TaskResult(
        msg_id=record["msg_id"],
        engine=header.get("engine", -1),
        status=status,
        value=value,
        error=error,
        metadata={
            "started": _stamp(record.get("started")),
            "completed": _stamp(record.get("completed")),
            "stdout": record.get("stdout") or "",
            "stderr": record.get("stderr") or "",
            "engine_uuid": record.get("engine_uuid"),
        },
    )


def request_of(record: dict[str, Any], new_id: str, client: str) -> Request | SubmitTask:
    """The request (or load-balanced task) of `record` again, as `new_id` from `client`.

    Raises:
        ValueError: the record is not of an apply or execute request.
    """
    header = record["header"]
    kind = header["msg_type"]
    bulk = (record.get("metadata") or {}).get("bulk")
    if bulk:
        raise ValueError(
            f"task {record['msg_id']}: its arguments ({bulk} bytes) went straight to its "
            "engine and are not kept, so it cannot be resubmitted; start the cluster with a "
            "higher --bulk-threshold to keep arguments this large"
        )
    engine = -1 if record["queue"] == "task" else header.get("engine", -1)
    request: Apply | Execute
    if kind == "apply_request":
        buffers = as_bytes(record["buffers"])
        payload = Payload(buffers[0], tuple(buffers[1:]))
        request = Apply(msg_id=new_id, client=client, engine=engine, payload=payload)
    elif kind == "execute_request":
        request = Execute(
            msg_id=new_id, client=client, engine=engine, code=record["content"]["code"]
        )
    else:
        raise ValueError(f"only apply and execute requests can be resubmitted, not a {kind}")
    if record["queue"] != "task" or not isinstance(request, Apply):
        return request
    metadata = record.get("metadata") or {}
    targets = metadata.get("targets")
    return SubmitTask(
        request=request,
        targets=None if targets is None else tuple(targets),
        retries=metadata.get("retries", 0),
        timeout=metadata.get("timeout"),
    )
