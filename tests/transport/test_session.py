"""The wire format: signing, replay protection and the order of checks."""

from __future__ import annotations

import pickle
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from actorcluster.transport import (
    DELIM,
    Limits,
    ReplayGuard,
    Session,
    WireError,
    deserialize,
    serialize,
)
from actorcluster.transport._session import Item

from tests.transport.peer import Echo, Record


class _Sentinel:
    """Unpickling this creates a file: proof that a pickle was (wrongly) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return open, (str(self.path), "w")


def _wire(frames: list[Any]) -> list[bytes]:
    """What a receiver gets: each frame as bytes of its own (no views of the sender's memory)."""
    return [bytes(f) for f in frames]


def _reason(session: Session, frames: list[Any]) -> str:
    with pytest.raises(WireError) as info:
        session.unpack(frames)
    return info.value.reason


def test_round_trip_keeps_routing_and_messages() -> None:
    a, b = Session(b"k"), Session(b"k")
    frames = a.pack([Item("echo", "c1", Echo(text="hi")), Item("log", None, Record(text="x"))])
    incoming = b.unpack([b"peer-id", *frames])
    assert incoming.idents == [b"peer-id"]
    assert incoming.items == [
        Item("echo", "c1", Echo(text="hi")),
        Item("log", None, Record(text="x")),
    ]
    assert incoming.header["msg_type"] == "Echo"
    assert incoming.header["session"] == a.session


def test_numpy_buffers_travel_as_separate_frames() -> None:
    a, b = Session(b"k"), Session(b"k")
    array = np.arange(100_000, dtype=np.float64)
    frames = a.pack([Item("echo", None, Echo(text="a", data=serialize(array)))])
    assert len(frames) == 7  # delimiter, signature, header, parent, metadata, content, buffer
    assert len(frames[-1]) == array.nbytes
    message = b.unpack(_wire(frames)).items[0].message
    np.testing.assert_array_equal(deserialize(message.data), array)


def test_wrong_key_is_rejected() -> None:
    frames = Session(b"wrong").pack([Item("echo", None, Echo(text="hi"))])
    assert _reason(Session(b"k"), frames) == "bad_signature"


def test_tampered_buffer_is_rejected_before_anything_is_unpickled(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    a, b = Session(b"k"), Session(b"k")
    frames = a.pack([Item("echo", None, Echo(text="a", data=serialize(np.zeros(20_000))))])
    frames[-2] = pickle.dumps(_Sentinel(sentinel))  # content replaced by a hostile pickle
    frames[-1] = bytes(len(frames[-1]))  # and the buffer changed
    assert _reason(b, frames) == "bad_signature"
    assert not sentinel.exists()


def test_exact_replay_is_rejected() -> None:
    a, b = Session(b"k"), Session(b"k")
    frames = a.pack([Item("echo", None, Echo(text="hi"))])
    b.unpack(frames)
    assert _reason(b, frames) == "replay"


def test_forged_message_with_captured_signature_does_not_block_the_genuine_one() -> None:
    a, b = Session(b"k"), Session(b"k")
    genuine = a.pack([Item("echo", None, Echo(text="genuine"))])
    forged = list(genuine)
    forged[-1] = pickle.dumps([Echo(text="forged")])
    assert _reason(b, forged) == "bad_signature"
    assert b.unpack(genuine).items[0].message == Echo(text="genuine")


def _signed(session: Session, header: bytes, content: bytes = b"") -> list[Any]:
    body = [header, b"{}", b"{}", content or pickle.dumps([Echo(text="x")])]
    return [DELIM, session.sign(body), *body]


def _header(**fields: Any) -> bytes:
    base = {
        "msg_id": "m",
        "msg_type": "Echo",
        "session": "s",
        "date": time.time(),
        "items": [["echo", None, "Echo"]],
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not None})


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([b"junk", b"more junk"], "no_delimiter"),
        ([DELIM, b"sig", b"{}"], "too_few_frames"),
        ([DELIM, b"sig", b"{}", b"{}", b"{}", b"c", *[b""] * 5000], "too_many_frames"),
        ([DELIM, b"sig", b"x" * 70_000, b"{}", b"{}", b"c"], "oversized"),
    ],
)
def test_malformed_structure_is_refused_before_the_signature(
    frames: list[bytes], reason: str
) -> None:
    assert _reason(Session(b"k"), frames) == reason


def test_signed_but_malformed_headers_are_refused() -> None:
    s = Session(b"k")
    assert _reason(s, _signed(s, b"not json")) == "bad_header"
    assert _reason(s, _signed(s, b"[1, 2]")) == "bad_header"
    no_type = orjson.loads(_header())
    del no_type["msg_type"]
    assert _reason(s, _signed(s, orjson.dumps(no_type))) == "bad_header"
    assert _reason(s, _signed(s, _header(date="yesterday"))) == "bad_header"


def test_unknown_message_type_is_refused_before_unpickling(tmp_path: Path) -> None:
    s = Session(b"k")
    sentinel = tmp_path / "sentinel"
    hostile = pickle.dumps([_Sentinel(sentinel)])
    frames = _signed(
        s, _header(msg_type="NoSuchType", items=[["echo", None, "NoSuchType"]]), hostile
    )
    assert _reason(s, frames) == "unknown_type"
    assert not sentinel.exists()


def test_content_that_does_not_match_its_declared_type_is_refused() -> None:
    s = Session(b"k")
    frames = _signed(s, _header(), pickle.dumps([Record(text="not an echo")]))
    assert _reason(s, frames) == "bad_content"


def test_stale_message_is_refused() -> None:
    s = Session(b"k", limits=Limits(replay_window=60))
    assert _reason(s, _signed(s, _header(date=time.time() - 3600))) == "stale"


def test_replay_guard_memory_is_bounded_and_still_refuses_forgotten_messages() -> None:
    guard = ReplayGuard(window=300, capacity=100)
    now = time.time()
    for i in range(1000):
        guard.check(f"d{i}".encode(), now - 100 + i * 0.01)
    assert len(guard) <= 100
    with pytest.raises(WireError) as info:
        guard.check(b"d5", now - 100 + 5 * 0.01)  # forgotten, but dated before the floor
    assert info.value.reason == "stale"
    guard.check(b"new", now)


def test_dropped_messages_are_counted_by_reason() -> None:
    s = Session(b"k")
    for frames in ([b"junk"], Session(b"other").pack([Item("e", None, Echo(text="x"))])):
        try:
            s.unpack(frames)
        except WireError as e:
            s.drop(e, "test")
    assert s.dropped == {"no_delimiter": 1, "bad_signature": 1}


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Session(b"")


def test_a_buffer_changed_in_transit_is_refused_by_its_user() -> None:
    a, b = Session(b"k"), Session(b"k")
    frames = a.pack([Item("echo", None, Echo(text="a", data=serialize(np.arange(50_000.0))))])
    frames[-1] = bytes(len(frames[-1]))
    assert _reason(b, frames) == "bad_buffer"


def test_a_relay_forwards_buffers_with_their_signed_digests_without_reading_them() -> None:
    client, relay, engine = Session(b"k"), Session(b"k"), Session(b"k")
    array = np.arange(500_000.0)
    sent = _wire(client.pack([Item("relay", None, Echo(text="a", data=serialize(array)))]))
    forwarded = relay.unpack(sent, verify_buffers=False).items[0].message
    assert len(forwarded.data.digests) == 1  # kept from the wire, not computed
    again = _wire(relay.pack([Item("engine", None, forwarded)]))
    received = engine.unpack(again).items[0].message
    np.testing.assert_array_equal(deserialize(received.data), array)
    tampered = list(again)
    tampered[-1] = bytes(len(tampered[-1]))
    assert _reason(engine, tampered) == "bad_buffer"


class _MeetingSet(set[bytes]):
    """A set whose lookups wait (briefly) for a second lookup to meet them there."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier

    def __contains__(self, item: object) -> bool:
        found = super().__contains__(item)
        try:
            self.barrier.wait()  # both threads between their lookup and their add
        except threading.BrokenBarrierError:
            pass  # the other thread could not get here meanwhile
        return found


def test_a_replay_checked_by_two_threads_at_once_gets_through_once() -> None:
    # a client's I/O thread and its calling threads share one session
    guard = ReplayGuard(300.0, 1000)
    guard._seen = _MeetingSet(threading.Barrier(2, timeout=0.5))
    outcomes: list[str] = []

    def check() -> None:
        try:
            guard.check(b"same digest", time.time())
            outcomes.append("accepted")
        except WireError as e:
            outcomes.append(e.reason)

    threads = [threading.Thread(target=check) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes) == ["accepted", "replay"]
