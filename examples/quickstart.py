"""Start a local cluster of 2 engine processes and run Python on every engine.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import time

import numpy as np

from actorcluster import Cluster


def main() -> None:
    started = time.perf_counter()
    with Cluster(n=2) as rc:
        print(
            f"cluster of {len(rc)} engines up in {time.perf_counter() - started:.2f} s: ids {rc.ids}"
        )
        dview = rc[:]
        dview.block = True

        dview["a"] = 5  # push to every engine's namespace
        dview["b"] = 10
        print("a + b + 27 on each engine:", dview.apply(lambda x: a + b + x, 27))  # noqa: F821

        dview.scatter("x", np.arange(16.0))  # one contiguous block per engine
        dview.execute("y = x ** 2")
        print("gathered squares:", dview.gather("y"))

        print("parallel map:", dview.map(lambda n: n**10, range(8)))

        ar = rc[0].apply_async(lambda: print("printed on engine 0") or "done")
        print("async result:", ar.get(timeout=10), "| its stdout:", ar.stdout.strip())

        try:
            dview.execute("1/0")
        except Exception as e:  # noqa: BLE001 - shown to the reader
            print("errors from engines come back as", type(e).__name__)


if __name__ == "__main__":
    main()
