"""Actors in two real processes over tcp://127.0.0.1: asks, failures, death watch, bad input."""

from __future__ import annotations

import pickle
import queue
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil
import pytest
import zmq
from actorcluster.transport import DELIM, RemoteRef, Session, Terminated, actor_of, serialize
from actorcluster.transport._port import Port
from actorcluster.transport._session import Item
from actorcluster.transport._zmqio import send_frames

from actorcluster.error import AskTimeout, NodeUnreachable, RemoteError, UnknownActor
from tests.conftest import Peer, wait_until
from tests.transport.peer import Boom, Echo, Quit, Record, Recorded, Stall, Touch
from tests.transport.test_actor import Watcher
from tests.transport.test_session import _header, _Sentinel

pytestmark = pytest.mark.slow


@pytest.fixture
def ref(peer: Peer, key: bytes) -> RemoteRef:
    return RemoteRef(peer.address, Session(key))


def _raw_dealer(peer: Peer) -> zmq.Socket[Any]:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(f"tcp://{peer.node}")
    return dealer


def _sync(dealer: zmq.Socket[Any], key: bytes) -> None:
    """Ask over `dealer` itself: its reply proves everything sent before was handled."""
    session = Session(key)
    send_frames(dealer, session.pack([Item("echo", "sync", Echo(text="sync"))]))
    assert dealer.poll(5000), "the peer did not answer"
    reply = session.unpack(dealer.recv_multipart()).items[0]
    assert reply.cid == "sync"


def test_tell_and_ask_between_processes(ref: RemoteRef) -> None:
    ref.tell(Record(text="one"))
    ref.tell(Record(text="two"))
    assert ref.ask(Echo(text="hello"), block=True, timeout=5) == "hello"
    assert ref.ask(Recorded(), block=True, timeout=5)["recorded"] == ["one", "two"]


def test_many_pipelined_tells_arrive_in_order(ref: RemoteRef) -> None:
    for i in range(5000):
        ref.tell(Record(text=str(i)))
    recorded = ref.ask(Recorded(), block=True, timeout=30)["recorded"]
    assert recorded == [str(i) for i in range(5000)]


def test_numpy_arrays_cross_and_arrive_writable(ref: RemoteRef) -> None:
    array = np.arange(200_000, dtype=np.float64)
    _, payload = ref.ask(Echo(text="a", data=serialize(array)), block=True, timeout=10)
    from actorcluster.transport import deserialize

    back = deserialize(payload)
    np.testing.assert_array_equal(back, array)
    back[0] = -1.0


def test_ask_times_out_with_a_clear_error(ref: RemoteRef) -> None:
    started = time.monotonic()
    with pytest.raises(AskTimeout, match="no reply from actor://"):
        ref.ask(Stall(seconds=5), block=True, timeout=0.3)
    assert time.monotonic() - started < 3
    assert ref.ask(Echo(text="after"), block=True, timeout=10) == "after"


def test_ask_to_an_unknown_actor_names_it(peer: Peer, key: bytes) -> None:
    nobody = RemoteRef(f"actor://{peer.node}/nobody", Session(key))
    with pytest.raises(UnknownActor, match="'nobody'"):
        nobody.ask(Echo(text="x"), block=True, timeout=5)


def test_ask_to_a_stopped_actor_fails_clearly(peer: Peer, key: bytes) -> None:
    sidekick = RemoteRef(f"actor://{peer.node}/sidekick", Session(key))
    assert sidekick.ask(Echo(text="x"), block=True, timeout=5) == "x"
    sidekick.tell(Quit())
    with pytest.raises(UnknownActor, match="'sidekick'"):
        for _ in range(100):  # the stop is queued behind earlier messages: ask until it took
            sidekick.ask(Echo(text="x"), block=True, timeout=5)


def test_ask_to_an_actor_whose_node_stopped_fails_clearly(ref: RemoteRef) -> None:
    ref.tell(Quit())  # the echo actor is the node: its socket closes with it
    with pytest.raises(NodeUnreachable):
        for _ in range(100):  # the stop is queued behind earlier messages: ask until it took
            ref.ask(Echo(text="x"), block=True, timeout=5)


def test_handler_error_comes_back_as_remote_error_and_the_actor_serves_on(ref: RemoteRef) -> None:
    with pytest.raises(RemoteError) as info:
        ref.ask(Boom(), block=True, timeout=5)
    assert info.value.ename == "ValueError" and "boom on request" in info.value.traceback
    with pytest.raises(RemoteError, match="SystemExit"):
        ref.ask(Boom(exit=True), block=True, timeout=5)
    ref.tell(Boom())
    assert ref.ask(Echo(text="alive"), block=True, timeout=5) == "alive"


def test_ask_to_a_killed_peer_fails_without_waiting_for_its_timeout(
    peer: Peer, ref: RemoteRef
) -> None:
    assert ref.ask(Echo(text="up"), block=True, timeout=5) == "up"
    pending = ref.ask(Stall(seconds=30), timeout=30)
    started = time.monotonic()
    peer.kill()
    with pytest.raises(NodeUnreachable, match="connection dropped"):
        pending.get(timeout=30)
    with pytest.raises(NodeUnreachable):
        ref.ask(Echo(text="x"), block=True, timeout=30)
    assert time.monotonic() - started < 10


def test_death_watch_fires_when_the_peer_process_is_killed(peer: Peer, key: bytes) -> None:
    seen: queue.Queue[Terminated] = queue.Queue()
    watcher = Watcher.start(Session(key), seen)
    watcher.ask(peer.address, timeout=5)
    started = time.monotonic()
    peer.kill()
    terminated = seen.get(timeout=10)
    assert terminated.address == peer.address
    assert terminated.reason.startswith("node unreachable")
    assert time.monotonic() - started < 5


def test_death_watch_fires_when_the_remote_actor_stops(
    peer: Peer, key: bytes, ref: RemoteRef
) -> None:
    seen: queue.Queue[Terminated] = queue.Queue()
    watcher = Watcher.start(Session(key), seen)
    watcher.ask(peer.address, timeout=5)
    assert ref.ask(Echo(text="sync"), block=True, timeout=5) == "sync"
    ref.tell(Quit())
    terminated = seen.get(timeout=10)
    assert terminated.address == peer.address
    # "stopped", or the drop of the stopped actor's node if ZeroMQ reports it first (a
    # connection that ends takes the messages not yet read off it along)
    assert terminated.reason in ("stopped", "node unreachable: its connection dropped")
    assert actor_of(watcher).node  # the watcher is still serving


def test_wrong_key_is_rejected_and_no_handler_runs(
    peer: Peer, ref: RemoteRef, tmp_path: Path
) -> None:
    sentinel = tmp_path / "touched"
    intruder = RemoteRef(peer.address, Session(b"not the key"))
    intruder.tell(Touch(path=str(sentinel)))
    with pytest.raises(AskTimeout):
        intruder.ask(Echo(text="x"), block=True, timeout=0.5)
    stats = ref.ask(Recorded(), block=True, timeout=5)
    assert set(stats["dropped"]) == {"bad_signature"}  # the tell and the ask, one batch or two
    assert not sentinel.exists()


def test_tampered_buffer_never_unpickles(
    peer: Peer, ref: RemoteRef, key: bytes, tmp_path: Path
) -> None:
    sentinel = tmp_path / "sentinel"
    frames = Session(key).pack(
        [Item("echo", None, Echo(text="x", data=serialize(np.zeros(50_000))))]
    )
    frames[-2] = pickle.dumps([_Sentinel(sentinel)])
    frames[-1] = bytes(len(frames[-1]))
    dealer = _raw_dealer(peer)
    send_frames(dealer, frames)
    _sync(dealer, key)
    assert ref.ask(Recorded(), block=True, timeout=5)["dropped"] == {"bad_signature": 1}
    assert not sentinel.exists()
    dealer.close()


def test_exact_replay_is_rejected(peer: Peer, ref: RemoteRef, key: bytes) -> None:
    frames = Session(key).pack([Item("echo", None, Record(text="once"))])
    dealer = _raw_dealer(peer)
    send_frames(dealer, frames)
    send_frames(dealer, frames)
    _sync(dealer, key)
    stats = ref.ask(Recorded(), block=True, timeout=5)
    assert stats["recorded"] == ["once"]
    assert stats["dropped"] == {"replay": 1}
    dealer.close()


def test_forged_message_with_captured_signature_does_not_block_the_genuine(
    peer: Peer, ref: RemoteRef, key: bytes
) -> None:
    genuine = Session(key).pack([Item("echo", None, Record(text="genuine"))])
    forged = list(genuine)
    forged[-1] = pickle.dumps([Record(text="forged")])
    dealer = _raw_dealer(peer)
    send_frames(dealer, forged)
    send_frames(dealer, genuine)
    _sync(dealer, key)
    stats = ref.ask(Recorded(), block=True, timeout=5)
    assert stats["recorded"] == ["genuine"]
    assert stats["dropped"] == {"bad_signature": 1}
    dealer.close()


def test_malformed_input_is_dropped_and_the_actor_serves_the_next_request(
    peer: Peer, ref: RemoteRef, key: bytes
) -> None:
    signer = Session(key)

    def signed(header: bytes, content: bytes | None = None) -> list[Any]:
        body = [header, b"{}", b"{}", content or pickle.dumps([Echo(text="x")])]
        return [DELIM, signer.sign(body), *body]

    no_type = orjson.loads(_header())
    del no_type["msg_type"]
    bad = [
        [b"no delimiter here"],
        [DELIM, b"signature"],
        signed(b"{not json"),
        signed(orjson.dumps(no_type)),
        signed(_header(msg_type="Nope", items=[["echo", None, "Nope"]])),
        [DELIM, b"sig", b"x" * 100_000, b"{}", b"{}", b"c"],
    ]
    dealer = _raw_dealer(peer)
    for frames in bad:
        send_frames(dealer, frames)
        _sync(dealer, key)  # the actor is alive and serves the next request

    assert ref.ask(Recorded(), block=True, timeout=5)["dropped"] == {
        "no_delimiter": 1,
        "too_few_frames": 1,
        "bad_header": 2,
        "unknown_type": 1,
        "oversized": 1,
    }
    dealer.close()


def test_an_unread_connection_monitor_stays_bounded_so_it_cannot_stall_the_process(
    peer: Peer, key: bytes
) -> None:
    # libzmq writes monitor events blocking from its I/O thread: a monitor left unread
    # that kept filling (a retry event every 100 ms) stalled every socket of the process.
    port = Port(Session(key))  # a port whose owner never reads its sockets
    port.send(peer.node, "echo", Echo(text="x"))
    peer.kill()
    monitor = port._dealers[peer.node][1]
    events, deadline = 0, time.monotonic() + 1.5
    while time.monotonic() < deadline:  # a bounded count of what the dead peer causes
        if monitor.poll(50):
            monitor.recv_multipart()
            events += 1
    # dropped once (and connected once, unless the port read that itself while sending):
    # no retries pile up
    assert events in (1, 2)
    port.close()


def test_a_send_to_a_node_whose_connection_dropped_returns_and_its_ask_fails(
    peer: Peer, key: bytes
) -> None:
    # A DEALER that does not reconnect has nowhere to queue once its connection dropped:
    # a blocking send there waited forever, freezing the thread (an actor, or client code).
    port = Port(Session(key))  # a port whose owner never reads its sockets
    port.send(peer.node, "echo", Echo(text="x"))
    peer.kill()
    assert port._dealers[peer.node][1].poll(5000), "the drop was never reported"
    asked: queue.Queue[Any] = queue.Queue()
    threading.Thread(
        target=lambda: asked.put(port.ask(peer.node, "echo", Echo(text="y"), timeout=60)),
        daemon=True,
    ).start()
    future = asked.get(timeout=10)  # raises queue.Empty if the send blocked
    with pytest.raises(NodeUnreachable, match="connection dropped"):
        future.get(timeout=0)
    port.close()


def _process_io_works() -> bool:
    """Whether this process's ZeroMQ I/O still moves a message over tcp."""
    context = zmq.Context.instance()
    router, dealer = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        dealer.send(b"hello")
        return bool(router.poll(5000))
    finally:
        router.close(linger=0)
        dealer.close(linger=0)


def test_closing_a_port_while_it_connects_cannot_stall_the_process(key: bytes) -> None:
    # A connect torn down by close() reports CLOSED from libzmq's I/O thread, which writes
    # monitor events blocking: with the monitor's reader closed first, that thread (and
    # every socket of the process) blocked for good.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    node = f"127.0.0.1:{listener.getsockname()[1]}"
    filler = socket.create_connection(listener.getsockname(), timeout=5)  # the backlog: full
    ports = [Port(Session(key)) for _ in range(5)]
    for port in ports:
        port.send(node, "echo", Echo(text="x"))  # its connect hangs

    def connecting() -> int:
        return sum(
            c.status == psutil.CONN_SYN_SENT and c.raddr and c.raddr.port == int(node[10:])
            for c in psutil.Process().net_connections(kind="tcp")
        )

    wait_until(lambda: connecting() >= len(ports), 10)
    for port in ports:
        port.close()
    assert _process_io_works()
    filler.close()
    listener.close()


def test_a_port_whose_owner_never_reads_stops_holding_what_it_sent_once_connected(
    peer: Peer, key: bytes
) -> None:
    # Messages sent before a connection is made are kept, to report them if it never is;
    # a port whose monitor nobody read kept every message it ever sent (an engine's results).
    port = Port(Session(key))

    def sent_and_released() -> bool:
        port.send(peer.node, "echo", Record(text="x" * 1000))
        return peer.node not in port._unconfirmed

    wait_until(sent_and_released, 5)
    port.close()
