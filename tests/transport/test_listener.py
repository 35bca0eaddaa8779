"""A Listener: the socket a plain thread reads between pieces of other work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import zmq
from actorcluster.transport import Item, Listener, Reply, Session
from actorcluster.transport._zmqio import recv_frames, send_frames

from tests.transport.peer import Echo

KEY = b"test-key-0123456789"


@pytest.fixture
def listener() -> Iterator[Listener]:
    opened = Listener(Session(KEY), "127.0.0.1:1", "test")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def dealer(listener: Listener) -> Iterator[zmq.Socket[bytes]]:
    socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    socket.routing_id = b"peer-1"
    socket.connect(f"tcp://{listener.node}")
    try:
        yield socket
    finally:
        socket.close(linger=0)


def test_it_reads_a_signed_message_and_answers_its_sender_by_identity(
    listener: Listener, dealer: zmq.Socket[bytes]
) -> None:
    sender = Session(KEY)
    send_frames(dealer, sender.pack([Item("executor", "c1", Echo(text="hi"))]))
    assert listener.wait(10)
    incoming = listener.receive()
    assert incoming is not None and incoming.items[0].message == Echo(text="hi")
    assert incoming.idents == [b"peer-1"]
    assert listener.send(incoming.idents, [Item("", "c1", Reply(value="there"))])
    assert dealer.poll(10_000)
    (answer,) = sender.unpack(recv_frames(dealer)).items
    assert answer.message == Reply(value="there")


def test_a_message_with_a_wrong_key_is_dropped_and_counted(
    listener: Listener, dealer: zmq.Socket[bytes]
) -> None:
    send_frames(dealer, Session(b"another-key").pack([Item("executor", None, Echo(text="x"))]))
    assert listener.wait(10)
    assert listener.receive() is None
    assert listener.session.dropped["bad_signature"] == 1


def test_an_answer_to_a_peer_that_never_connected_is_refused(listener: Listener) -> None:
    assert not listener.send([b"nobody"], [Item("", "c1", Reply(value=1))])


def test_a_wake_from_another_thread_ends_a_wait_without_a_message(listener: Listener) -> None:
    threading.Thread(target=listener.wake).start()
    started = time.monotonic()
    assert listener.wait(30) is False
    assert time.monotonic() - started < 10  # woken, not timed out
