"""Task database benchmark: the store, the file database, recovery, and its cost end to end.

Prints
- records/s for submission plus completion at 10k and 100k records (memory and file
  backends; events come in batches of 250 and the file backend group-commits each, as
  the DB writer does), the events of a no-op apply as received from the network,
  including building the records once read;
- query latency for a msg_id $in of 100 ids and a `completed $ne None` scan at 100k;
- restart time at 100k records: replaying the journal, and loading a snapshot;
- no-op load-balanced tasks/s of a 2-engine process cluster with no task database, the
  in-memory one and the file one (each in a fresh process, rounds interleaved, median and
  range), the cost of each, and the controller's CPU time per task (steadier than
  throughput on a shared machine).

Run: python bench/taskdb.py [--tasks 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actorcluster.actors.messages import Apply, TaskLog, TaskResult
from actorcluster.actors.store import TaskStore, open_store
from actorcluster.transport import Item, Message, Received, Session, serialize


def _noop() -> None:
    return None


def _events(n: int) -> list[tuple[Apply, TaskResult]]:
    """What the DB writer hears of `n` no-op applies: each request and its result."""
    payload = serialize((_noop, (), {}))
    value = serialize(None)
    now = time.time()
    events = []
    for i in range(n):
        msg_id = f"bench-{i}"
        request = Apply(msg_id=msg_id, client="client-bench", engine=i % 2, payload=payload)
        result = TaskResult(
            msg_id=msg_id,
            engine=i % 2,
            status="ok",
            value=value,
            metadata={"started": now, "completed": now, "stdout": "", "stderr": ""},
        )
        events.append((request, result))
    return events


def _as_received(session: Session, message: Message) -> tuple[float, Any, Received]:
    """An event as the DB writer hears it: the message as received, and the bytes it came in."""
    wire = session.unpack(session.pack([Item("relay", None, message)]))
    assert isinstance(wire.content, bytes)
    return (time.time(), wire.items[0].message, (wire.content, 0))


def fill(store: TaskStore, n: int) -> float:
    """Record the submission and completion of `n` tasks as the DB writer does (events
    in batches of 250, a commit per batch), then read them once (the records are built);
    return records/s."""
    session = Session(b"bench-key")
    requests, results = [], []
    for request, result in _events(n):
        requests.append(_as_received(session, request))
        results.append(_as_received(session, result))
    engines = {0: "engine-0", 1: "engine-1"}
    started = time.perf_counter()
    for events, kind in ((requests, "submitted"), (results, "finished")):
        for i in range(0, n, 250):
            store.log(TaskLog(queue="mux", **{kind: tuple(events[i : i + 250])}), engines)
            store.commit()
    assert len(store) >= n
    return n / (time.perf_counter() - started)


def store_rows(folder: Path) -> list[tuple[str, str]]:
    rows = []
    big: TaskStore | None = None
    for n in (10_000, 100_000):
        memory = TaskStore()
        rows.append(
            (f"memory: submission + completion, {n:,} records (rec/s)", f"{fill(memory, n):,.0f}")
        )
        big = memory
        shutil.rmtree(folder / "db", ignore_errors=True)
        durable = open_store("tinydb", folder / "db")
        assert durable is not None and durable.journal is not None
        rows.append(
            (f"file: submission + completion, {n:,} records (rec/s)", f"{fill(durable, n):,.0f}")
        )
        durable.close()
    assert big is not None
    ids = [f"bench-{i}" for i in range(0, 100_000, 1000)]
    t = time.perf_counter()
    assert len(big.find({"msg_id": {"$in": ids}})) == 100
    rows.append(
        ("msg_id $in of 100 ids at 100k records (ms)", f"{(time.perf_counter() - t) * 1e3:.2f}")
    )
    t = time.perf_counter()
    assert len(big.find({"completed": {"$ne": None}}, keys=["msg_id"])) == 100_000
    rows.append(
        ("completed $ne None scan at 100k records (ms)", f"{(time.perf_counter() - t) * 1e3:.0f}")
    )

    t = time.perf_counter()
    replayed = open_store("tinydb", folder / "db")  # the journal of the 100k fill
    rows.append(("restart at 100k records, journal replay (s)", f"{time.perf_counter() - t:.2f}"))
    assert replayed is not None and replayed.journal is not None and len(replayed) == 100_000
    t = time.perf_counter()
    replayed.snapshot()
    rows.append(("snapshot of 100k records (s)", f"{time.perf_counter() - t:.2f}"))
    replayed.close()
    t = time.perf_counter()
    loaded = open_store("tinydb", folder / "db")
    rows.append(
        ("restart at 100k records, from the snapshot (s)", f"{time.perf_counter() - t:.2f}")
    )
    assert loaded is not None and loaded.journal is not None and len(loaded) == 100_000
    loaded.close()
    return rows


def lb_rate(db: str, tasks: int) -> tuple[float, float]:
    """Tasks/s end to end, and the controller's CPU time per task (us)."""
    import psutil

    from actorcluster import Cluster

    cluster = Cluster(n=2, db=db).start()
    try:
        assert cluster.controller_process is not None
        controller = psutil.Process(cluster.controller_process.pid)
        with cluster.connect_client() as rc:
            view = rc.load_balanced_view()
            for _ in range(200):
                view.apply_sync(_noop)
            cpu = sum(controller.cpu_times()[:2])
            started = time.perf_counter()
            ars = [view.apply_async(_noop) for _ in range(tasks)]
            for ar in ars:
                ar.get(timeout=600)
            rate = tasks / (time.perf_counter() - started)
            return rate, (sum(controller.cpu_times()[:2]) - cpu) / tasks * 1e6
    finally:
        cluster.stop()


def cluster_rows(folder: Path, tasks: int, rounds: int) -> list[tuple[str, str]]:
    """Each measurement in a fresh client process (a client that ran a cluster before runs
    the next one slower: its heap is bigger, its collections longer), the kinds in a
    rotating order, so that neither history nor order favours one kind."""
    kinds = {"none": "none", "memory": "memory", "file": str(folder / "cluster-db")}
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    cpus: dict[str, list[float]] = {kind: [] for kind in kinds}
    order = list(kinds)
    for round_ in range(rounds):
        for kind in order[round_ % 3 :] + order[: round_ % 3]:
            shutil.rmtree(folder / "cluster-db", ignore_errors=True)
            command = [sys.executable, __file__, "--lb-rate", kinds[kind], "--tasks", str(tasks)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
            rate, cpu = map(float, done.stdout.split()[-2:])
            rates[kind].append(rate)
            cpus[kind].append(cpu)
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    rows = []
    for kind in kinds:
        cost = 1 - medians[kind] / medians["none"]
        note = "" if kind == "none" else f"  (cost {cost:+.1%}; target < 10%)"
        spread = f"  [{min(rates[kind]):,.0f}-{max(rates[kind]):,.0f}]"
        rows.append(
            (
                f"load-balanced no-op tasks/s, database {kind}",
                f"{medians[kind]:,.0f}{note}{spread}",
            )
        )
    for kind in kinds:
        rows.append(
            (
                f"  controller CPU per task, database {kind} (us)",
                f"{statistics.median(cpus[kind]):.0f}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=5000, help="tasks per throughput round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per database kind")
    parser.add_argument("--skip-cluster", action="store_true", help="only the store numbers")
    parser.add_argument("--lb-rate", metavar="DB", help=argparse.SUPPRESS)  # one measurement
    args = parser.parse_args()
    if args.lb_rate:
        print(*lb_rate(args.lb_rate, args.tasks))
        return
    folder = Path(tempfile.mkdtemp(prefix="actorcluster-bench-"))
    try:
        rows = store_rows(folder)
        if not args.skip_cluster:
            rows += cluster_rows(folder, args.tasks, args.rounds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{'workload':58s} result")
    for label, value in rows:
        print(f"{label:58s} {value}")
    print(f"\nrerun: python bench/taskdb.py --tasks {args.tasks} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
