"""Transport benchmark: actorcluster's actor messaging beside raw pyzmq, in one run.

Measures, between two processes over tcp://127.0.0.1:
  * ask round trip of a 100-byte message (median, p99) vs a raw DEALER/ROUTER echo, and
    beside them the floor of the signed wire format alone: the same echo over raw
    sockets with only `Session.pack`/`unpack` (signing, framing, decoding) on each side;
  * pipelined tell throughput of 100-byte messages vs raw DEALER -> ROUTER sends;
  * transfer of a 100 MB numpy array (ask carrying it, tiny reply) vs a raw
    send_multipart of the same bytes (tiny reply).

Run: python bench/transport.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actorcluster.transport import (
    Message,
    RemoteRef,
    Reply,
    Session,
    SocketActor,
    actor_of,
    deserialize,
    serialize,
)
from actorcluster.transport._session import Item
from actorcluster.transport._zmqio import recv_frames, send_frames

KEY = b"bench-key"
PAYLOAD = b"x" * 100
ARRAY_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class BenchEcho(Message):
    data: Any


@dataclass(frozen=True, kw_only=True)
class BenchTell(Message):
    data: bytes


@dataclass(frozen=True, kw_only=True)
class BenchCount(Message):
    pass


class BenchActor(SocketActor):
    def __init__(self) -> None:
        super().__init__(Session(KEY), name="bench", listen="tcp://127.0.0.1:0")
        self.told = 0

    def on_receive(self, message: Any) -> Any:
        match message:
            case BenchEcho(data=data):
                if isinstance(data, bytes):
                    return data
                obj = deserialize(data)
                return int(getattr(obj, "nbytes", 0))
            case BenchTell():
                self.told += 1
                return None
            case BenchCount():
                return self.told
        return None


def serve_actor() -> None:
    ref = BenchActor.start()
    print(actor_of(ref).address, flush=True)
    sys.stdin.read()
    ref.stop()
    os._exit(0)


def serve_raw() -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(port, flush=True)
    count = 0
    while True:
        frames = recv_frames(router, 0)
        kind = frames[1].bytes
        if kind == b"echo":
            send_frames(router, [frames[0], frames[2]])
        elif kind == b"tell":
            count += 1
        elif kind == b"count":
            send_frames(router, [frames[0], str(count).encode()])
        elif kind == b"big":
            send_frames(router, [frames[0], str(len(frames[2])).encode()])
        else:
            os._exit(0)


def serve_wire() -> None:
    """The echo of `serve_raw` with the signed wire format and nothing of the actors."""
    session = Session(KEY)
    router = zmq.Context.instance().socket(zmq.ROUTER)
    print(router.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    while True:
        incoming = session.unpack(recv_frames(router, 0))
        item = incoming.items[0]
        frames = session.pack([Item("", item.cid, Reply(value=item.message.data))])
        send_frames(router, [*incoming.idents, *frames])


def spawn(role: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", role],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Raw:
    def __init__(self, port: str) -> None:
        self.dealer = zmq.Context.instance().socket(zmq.DEALER)
        self.dealer.connect(f"tcp://127.0.0.1:{port}")

    def ask(self) -> None:
        send_frames(self.dealer, [b"echo", PAYLOAD])
        recv_frames(self.dealer, 0)

    def tell(self) -> None:
        send_frames(self.dealer, [b"tell", PAYLOAD])

    def count(self) -> int:
        send_frames(self.dealer, [b"count"])
        return int(recv_frames(self.dealer, 0)[0].bytes)

    def big(self, array: np.ndarray) -> None:
        send_frames(self.dealer, [b"big", memoryview(array).cast("B")])
        recv_frames(self.dealer, 0)


class Wire:
    """Asks of `serve_wire`: pack, send, wait in a poll, receive, unpack, as a port does."""

    def __init__(self, port: str) -> None:
        self.session = Session(KEY)
        self.dealer = zmq.Context.instance().socket(zmq.DEALER)
        self.dealer.connect(f"tcp://127.0.0.1:{port}")
        self.poller = zmq.Poller()
        self.poller.register(self.dealer, zmq.POLLIN)

    def ask(self) -> None:
        send_frames(self.dealer, self.session.pack([Item("bench", "c", BenchEcho(data=PAYLOAD))]))
        self.poller.poll(10_000)
        self.session.unpack(recv_frames(self.dealer))


class Ours:
    def __init__(self, address: str) -> None:
        self.ref = RemoteRef(address, Session(KEY))

    def ask(self) -> None:
        self.ref.ask(BenchEcho(data=PAYLOAD), block=True)

    def tell(self) -> None:
        self.ref.tell(BenchTell(data=PAYLOAD))

    def count(self) -> int:
        return int(self.ref.ask(BenchCount(), block=True, timeout=60))

    def big(self, array: np.ndarray) -> None:
        self.ref.ask(BenchEcho(data=serialize(array)), block=True, timeout=60)


def time_asks(
    side: Raw | Wire | Ours, n: int, server: int, cpu: dict[str, list[float]]
) -> list[float]:
    for _ in range(200):
        side.ask()
    out = []
    me, peer = psutil.Process(), psutil.Process(server)
    c0, s0 = sum(me.cpu_times()[:2]), sum(peer.cpu_times()[:2])
    for _ in range(n):
        t = time.perf_counter()
        side.ask()
        out.append(time.perf_counter() - t)
    cpu.setdefault("client_cpu", []).append((sum(me.cpu_times()[:2]) - c0) / n * 1e6)
    cpu.setdefault("server_cpu", []).append((sum(peer.cpu_times()[:2]) - s0) / n * 1e6)
    return out


def time_tells(side: Raw | Ours, n: int) -> float:
    base = side.count()
    t = time.perf_counter()
    for _ in range(n):
        side.tell()
    while side.count() < base + n:
        pass
    return n / (time.perf_counter() - t)


def time_big(side: Raw | Ours, array: np.ndarray, rounds: int) -> float:
    side.big(array)  # warm up: page faults of the first transfer
    best = []
    for _ in range(rounds):
        t = time.perf_counter()
        side.big(array)
        best.append(time.perf_counter() - t)
    return ARRAY_BYTES / 1e6 / statistics.median(best)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", choices=["actor", "raw", "wire"], help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each workload")
    parser.add_argument("--asks", type=int, default=3000)
    parser.add_argument("--tells", type=int, default=50000)
    args = parser.parse_args()
    if args.serve == "actor":
        return serve_actor()
    if args.serve == "raw":
        return serve_raw()
    if args.serve == "wire":
        return serve_wire()

    actor_proc, address = spawn("actor")
    raw_proc, port = spawn("raw")
    wire_proc, wire_port = spawn("wire")
    ours, raw, wire = Ours(address), Raw(port), Wire(wire_port)
    array = np.random.default_rng(0).random(ARRAY_BYTES // 8)
    results: dict[str, dict[str, list[float]]] = {"raw": {}, "ours": {}, "wire": {}}
    try:
        for _ in range(args.rounds):
            asks = time_asks(wire, args.asks, wire_proc.pid, {})
            results["wire"].setdefault("ask_median", []).append(statistics.median(asks) * 1e6)
            for name, side, proc in (("raw", raw, raw_proc), ("ours", ours, actor_proc)):
                r = results[name]
                asks = time_asks(side, args.asks, proc.pid, r)
                r.setdefault("ask_median", []).append(statistics.median(asks) * 1e6)
                r.setdefault("ask_p99", []).append(percentile(asks, 0.99) * 1e6)
                r.setdefault("tells", []).append(time_tells(side, args.tells))
                r.setdefault("big", []).append(time_big(side, array, 3))
    finally:
        for proc in (actor_proc, raw_proc, wire_proc):
            proc.kill()
            proc.wait()

    def med(name: str, key: str) -> float:
        return statistics.median(results[name][key])

    rows = [
        ("ask round trip, median (us)", "ask_median", "<= 1.5x"),
        ("ask round trip, p99 (us)", "ask_p99", ""),
        ("  CPU per ask, client process (us)", "client_cpu", ""),
        ("  CPU per ask, server process (us)", "server_cpu", ""),
        ("tell throughput, 100 B (msg/s)", "tells", ">= 0.6x"),
        ("100 MB numpy array (MB/s)", "big", ">= 0.7x"),
    ]
    print(f"\n{'workload':34s} {'raw pyzmq':>12s} {'actorcluster':>13s} {'ratio':>7s}  target")
    for label, key, target in rows:
        r, o = med("raw", key), med("ours", key)
        ratio = o / r
        print(f"{label:34s} {r:12.1f} {o:13.1f} {ratio:6.2f}x  {target}")
    floor = med("wire", "ask_median")
    print(
        f"{'  floor: signed wire format alone':34s} {'':12s} {floor:13.1f} "
        f"{floor / med('raw', 'ask_median'):6.2f}x  (Session.pack/unpack over raw sockets)"
    )
    print(
        f"\nmedians of {args.rounds} alternating rounds; rerun: python bench/transport.py --rounds {args.rounds}"
    )


if __name__ == "__main__":
    main()
