"""Task database benchmark (so far: the in-memory store; the file backend comes next).

Prints records/s for insert plus completion update at 10k and 100k records, and query
latency for a msg_id $in of 100 ids and a `completed $ne None` scan at the largest size.

Run: python bench/taskdb.py
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime, timedelta

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from actorcluster.actors.store import TaskStore

NOW = datetime.now(UTC)


def fill(n: int) -> tuple[TaskStore, float]:
    store = TaskStore()
    started = time.perf_counter()
    for i in range(n):
        store.insert(
            {"msg_id": f"m{i}", "submitted": NOW + timedelta(microseconds=i), "client_uuid": "c",
             "engine_uuid": f"e{i % 4}", "completed": None, "buffers": []}
        )  # fmt: skip
    for i in range(n):
        store.update(f"m{i}", {"completed": NOW, "result_content": {"status": "ok"}})
    return store, n / (time.perf_counter() - started)


def main() -> None:
    rows = []
    store = None
    for n in (10_000, 100_000):
        store, rate = fill(n)
        rows.append((f"insert + completion update, {n:,} records (records/s)", f"{rate:,.0f}"))
    assert store is not None
    ids = [f"m{i}" for i in range(0, 100_000, 1000)]
    t = time.perf_counter()
    found = store.find({"msg_id": {"$in": ids}})
    rows.append(
        ("msg_id $in of 100 ids at 100k records (ms)", f"{(time.perf_counter() - t) * 1e3:.2f}")
    )
    assert len(found) == 100
    t = time.perf_counter()
    done = store.find({"completed": {"$ne": None}}, keys=["msg_id"])
    rows.append(
        ("completed $ne None scan at 100k records (ms)", f"{(time.perf_counter() - t) * 1e3:.1f}")
    )
    assert len(done) == 100_000
    print(f"\n{'workload (memory backend)':55s} {'result':>12s}")
    for label, value in rows:
        print(f"{label:55s} {value:>12s}")
    print("\nrerun: python bench/taskdb.py")


if __name__ == "__main__":
    main()
