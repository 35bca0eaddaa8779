"""Cluster benchmark: actorcluster beside ipyparallel, same workloads, one run, 2 engines.

Each library is measured in a fresh process of its own:
  * start-up to 2 ready engines;
  * direct apply_sync round trip of a no-op (median, p99 over --calls calls);
  * load-balanced round trip likewise, and (actorcluster) without placing blocking calls
    on the engine that ran the last one: every call through the scheduler;
  * --tasks no-op apply_async to one engine, tasks/s end to end;
  * push then pull of a 100 MB float64 array, MB/s each way;
  * controller and engine RSS after that.

ipyparallel is not a dependency: install it in an environment of its own and point
--ipp-python at its interpreter (default: $IPP_PYTHON, else this interpreter if it has it):
    python -m venv /tmp/ipp-venv && /tmp/ipp-venv/bin/pip install ipyparallel numpy

Run: python bench/cluster.py [--ipp-python /tmp/ipp-venv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

ARRAY_MB = 100


def _tree_rss(root: int, exclude: set[int]) -> tuple[float, int]:
    import psutil

    total, count = 0.0, 0
    for proc in psutil.Process(root).children(recursive=True):
        if proc.pid in exclude:
            continue
        try:
            total += proc.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            pass
    return total / 2**20, count


def _noop() -> None:
    return None


def _noop_item(_: object) -> None:
    return None


def measure_dask(calls: int, tasks: int) -> dict[str, Any]:
    """The load-balanced workloads on Dask (2 worker processes, 1 thread each)."""
    from distributed import Client as DaskClient
    from distributed import LocalCluster

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = DaskClient(cluster)
    client.wait_for_workers(2)
    out["startup_s"] = time.perf_counter() - t0
    try:
        for _ in range(50):
            client.submit(_noop, pure=False).result()
        rtts = []
        for _ in range(calls):
            t = time.perf_counter()
            client.submit(_noop, pure=False).result()
            rtts.append(time.perf_counter() - t)
        rtts.sort()
        out["lb_rtt_median_ms"] = statistics.median(rtts) * 1e3
        out["lb_rtt_p99_ms"] = rtts[int(0.99 * len(rtts))] * 1e3
        t = time.perf_counter()
        futures = [client.submit(_noop, pure=False) for _ in range(tasks)]
        client.gather(futures)
        out["lb_tasks_per_s"] = tasks / (time.perf_counter() - t)
        t = time.perf_counter()
        client.gather(client.map(_noop_item, range(tasks), pure=False))
        out["lb_map_default"] = tasks / (time.perf_counter() - t)
    finally:
        client.close()
        cluster.close()
    return out


def _round_trips(view: Any, calls: int) -> tuple[float, float]:
    """Median and p99 in ms of `calls` blocking no-op applies, after 100 for warm-up."""
    for _ in range(100):
        view.apply_sync(_noop)
    rtts = []
    for _ in range(calls):
        t = time.perf_counter()
        view.apply_sync(_noop)
        rtts.append(time.perf_counter() - t)
    rtts.sort()
    return statistics.median(rtts) * 1e3, rtts[int(0.99 * len(rtts))] * 1e3


def _throughput(view: Any, tasks: int) -> float:
    """No-op tasks/s of `tasks` applies submitted at once."""
    t = time.perf_counter()
    ars = [view.apply_async(_noop) for _ in range(tasks)]
    for ar in ars:
        ar.get(timeout=600)
    return tasks / (time.perf_counter() - t)


def measure(lib: str, calls: int, tasks: int) -> dict[str, Any]:
    """Run every workload against `lib` in this process; return the numbers."""
    import numpy as np
    import psutil

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    if lib == "ipyparallel":
        import ipyparallel as ipp

        cluster = ipp.Cluster(n=2, log_level=40)
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(2, timeout=120)
    else:
        from actorcluster import Cluster

        cluster = Cluster(n=2)
        rc = cluster.start().connect_client()
    out["startup_s"] = time.perf_counter() - t0
    try:
        v0 = rc[0]
        out["rtt_median_ms"], out["rtt_p99_ms"] = _round_trips(v0, calls)
        out["direct_tasks_per_s"] = _throughput(v0, tasks)
        lview = rc.load_balanced_view()
        out["lb_rtt_median_ms"], out["lb_rtt_p99_ms"] = _round_trips(lview, calls)
        if lib == "actorcluster":  # the same, every call through the scheduler (no placing)
            rc._places = False
            out["lb_rtt_unplaced_ms"], _ = _round_trips(lview, calls)
            rc._places = True
        out["lb_tasks_per_s"] = _throughput(lview, tasks)
        for label, chunk in (("lb_map_default", None), ("lb_map_100", 100)):
            t = time.perf_counter()
            options = {} if chunk is None else {"chunksize": chunk}
            lview.map_sync(_noop_item, range(tasks), **options)
            out[label] = tasks / (time.perf_counter() - t)

        array = np.random.default_rng(0).random(ARRAY_MB * 2**20 // 8)
        v0.push({"big": array}, block=True)  # warm up the first transfer's page faults
        pushes, pulls = [], []
        for _ in range(3):
            t = time.perf_counter()
            v0.push({"big": array}, block=True)
            pushes.append(time.perf_counter() - t)
            t = time.perf_counter()
            back = v0.pull("big", block=True)
            pulls.append(time.perf_counter() - t)
        assert back.shape == array.shape
        out["push_MBps"] = array.nbytes / 2**20 / statistics.median(pushes)
        out["pull_MBps"] = array.nbytes / 2**20 / statistics.median(pulls)

        engine_pids = set(rc[:].apply_sync(os.getpid))
        out["engine_rss_MB"] = max(psutil.Process(p).memory_info().rss for p in engine_pids) / 2**20
        out["controller_rss_MB"], out["controller_processes"] = _tree_rss(os.getpid(), engine_pids)
    finally:
        if lib == "ipyparallel":
            rc.close()
            cluster.stop_cluster_sync()
        else:
            cluster.stop()
    return out


_LOWER_IS_BETTER = {
    "startup_s",
    "rtt_median_ms",
    "rtt_p99_ms",
    "lb_rtt_median_ms",
    "lb_rtt_p99_ms",
    "lb_rtt_unplaced_ms",
    "controller_rss_MB",
    "engine_rss_MB",
}

ROWS = [
    ("start-up to 2 engines (s)", "startup_s", "< 1 s"),
    ("direct round trip, median (ms)", "rtt_median_ms", "< 0.5 ms"),
    ("direct round trip, p99 (ms)", "rtt_p99_ms", ""),
    ("no-op apply_async to one engine (tasks/s)", "direct_tasks_per_s", ">= 10,000"),
    ("load-balanced round trip, median (ms)", "lb_rtt_median_ms", "< 0.7 ms"),
    ("load-balanced round trip, p99 (ms)", "lb_rtt_p99_ms", ""),
    ("... through the scheduler, no placing (ms)", "lb_rtt_unplaced_ms", "< 0.7 ms"),
    ("no-op load-balanced apply_async (tasks/s)", "lb_tasks_per_s", ">= 5,000"),
    ("map of a no-op, default chunksize (items/s)", "lb_map_default", ""),
    ("map of a no-op, chunksize=100 (items/s)", "lb_map_100", ""),
    ("push 100 MB (MB/s)", "push_MBps", ">= 1,500"),
    ("pull 100 MB (MB/s)", "pull_MBps", ">= 1,500"),
    ("controller RSS (MB)", "controller_rss_MB", "< 150"),
    ("engine RSS (MB)", "engine_rss_MB", ""),
]


def _run(python: str, lib: str, args: argparse.Namespace) -> dict[str, Any] | None:
    command = [
        python,
        __file__,
        "--measure",
        lib,
        "--calls",
        str(args.calls),
        "--tasks",
        str(args.tasks),
    ]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, env=env, check=False
    )
    if result.returncode != 0:
        print(f"{lib} failed:\n{result.stderr[-3000:]}", file=sys.stderr)
        return None
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def _python_with(module: str, *given: str | None) -> str | None:
    """The first interpreter (given, $IPP_PYTHON, this one) that can import `module`."""
    for candidate in (*given, os.environ.get("IPP_PYTHON"), sys.executable):
        if not candidate:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", f"import {module}"], capture_output=True, check=False
            )
        except OSError as e:
            print(f"cannot run {candidate}: {e.strerror}; skipping it", file=sys.stderr)
            continue
        if probe.returncode == 0:
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--measure", choices=["actorcluster", "ipyparallel", "dask"], help=argparse.SUPPRESS
    )
    parser.add_argument("--ipp-python", help="python of an environment with ipyparallel")
    parser.add_argument(
        "--dask-python", help="python of an environment with dask.distributed (default: ipp's)"
    )
    parser.add_argument(
        "--calls", type=int, default=1000, help="round trips to time (default 1000)"
    )
    parser.add_argument(
        "--tasks", type=int, default=10000, help="apply_async tasks (default 10000)"
    )
    args = parser.parse_args()
    if args.measure == "dask":
        print(json.dumps(measure_dask(args.calls, args.tasks)))
        return
    if args.measure:
        print(json.dumps(measure(args.measure, args.calls, args.tasks)))
        return

    ours = _run(sys.executable, "actorcluster", args)
    ipp_python = _python_with("ipyparallel", args.ipp_python)
    theirs = _run(ipp_python, "ipyparallel", args) if ipp_python else None
    if ipp_python is None:
        print("ipyparallel not found: pass --ipp-python (see --help); showing actorcluster only")
    dask_python = _python_with("distributed", args.dask_python, ipp_python)
    dask = _run(dask_python, "dask", args) if dask_python else None
    print(
        f"\n{'workload (2 engines)':44s} {'ipyparallel':>12s} {'dask':>9s} {'actorcluster':>13s} {'vs ipp':>8s}  target"
    )
    for label, key, target in ROWS:
        a = (ours or {}).get(key)
        b = (theirs or {}).get(key)
        d = (dask or {}).get(key)
        if not (a and b):
            ratio = "      -"
        else:
            ratio = f"{(b / a if key in _LOWER_IS_BETTER else a / b):7.1f}x"
        fa = f"{a:13.2f}" if isinstance(a, float) else f"{'-':>13s}"
        fb = f"{b:12.2f}" if isinstance(b, float) else f"{'-':>12s}"
        fd = f"{d:9.2f}" if isinstance(d, float) else f"{'-':>9s}"
        print(f"{label:44s} {fb} {fd} {fa} {ratio}  {target}")
    print("\nvs ipp: how many times better actorcluster is than ipyparallel (higher is better)")
    rerun = f"python bench/cluster.py --calls {args.calls} --tasks {args.tasks}"
    if ipp_python:
        rerun += f" --ipp-python {ipp_python}"
    print(f"rerun: {rerun}")


if __name__ == "__main__":
    main()
