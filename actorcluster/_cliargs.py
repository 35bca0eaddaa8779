"""The command line of `actorclusterd`: its commands, options and their help."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping

from actorcluster.actors.messages import BULK_THRESHOLD, HWM

__all__ = ["parser"]

Command = Callable[[argparse.Namespace], int]


def parser(description: str, runs: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The parser of `actorclusterd`; each command's `run` (and help) is `runs[name]`."""
    parser = argparse.ArgumentParser(
        prog="actorclusterd",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--profile", help="profile whose folder holds the files (default: 'default')"
        )
        p.add_argument(
            "--cluster-id", default="", help="tells apart several clusters of one profile"
        )
        p.add_argument("--dir", help=argparse.SUPPRESS)
        p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default 30)")
        p.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")

    start = commands.add_parser(
        "start", help="start a controller and engines", description=runs["start"].__doc__
    )
    common(start)
    start.add_argument(
        "-n", type=int, default=os.cpu_count() or 1, help="number of engines (default: cores)"
    )
    start.add_argument(
        "--ip", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    start.add_argument("--daemonize", action="store_true", help="return once the cluster is up")
    start.set_defaults(run=runs["start"])

    status = commands.add_parser(
        "status", help="show engines, queues, uptime", description=runs["status"].__doc__
    )
    common(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=runs["status"])

    stop = commands.add_parser(
        "stop", help="stop a running cluster", description=runs["stop"].__doc__
    )
    common(stop)
    stop.set_defaults(run=runs["stop"])

    controller = commands.add_parser(
        "controller",
        help="run a controller in the foreground",
        description=runs["controller"].__doc__,
    )
    common(controller)
    controller.add_argument("-n", type=int, default=0, help="engines to start with it (default 0)")
    controller.add_argument(
        "--ip", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    controller.add_argument(
        "--heartbeat-period", type=float, default=1.0, help="seconds between heartbeats"
    )
    controller.add_argument(
        "--heartbeat-misses", type=int, default=3, help="missed heartbeats before an engine is dead"
    )
    controller.set_defaults(run=runs["controller"])
    scheduler = commands.add_parser(
        "scheduler",
        help="run a task scheduler (started by a controller)",
        description=runs["scheduler"].__doc__,
    )
    scheduler.add_argument("--hub", required=True, help="the Hub's address (actor://host:port/hub)")
    scheduler.add_argument("--db", help="the DB writer's address (none: record nothing)")
    scheduler.add_argument("--port", type=int, default=0, help="the port to listen on (0: any)")
    scheduler.add_argument(
        "--ip", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    scheduler.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    scheduler.set_defaults(run=runs["scheduler"])
    for part in (start, controller):
        part.add_argument(
            "--scheduler-process",
            action="store_true",
            help="run the task scheduler in a process of its own (when one GIL is the limit)",
        )
    for part in (start, controller):
        part.add_argument(
            "--db",
            default="tinydb",
            choices=["tinydb", "memory", "none"],
            help="the task database: files in the profile (tinydb, the default, survives "
            "restarts), memory only, or none",
        )
        part.add_argument(
            "--db-dir", help="the folder of a tinydb task database (default: the profile's db/)"
        )
        part.add_argument(
            "--recover",
            action="store_true",
            help="move a damaged task database file aside and keep what is readable "
            "(without it, a damaged file stops the start)",
        )
        part.add_argument(
            "--db-record-limit",
            type=int,
            default=1_000_000,
            help="task records kept at most; the oldest finished ones go first (default 1000000)",
        )
        part.add_argument(
            "--db-size-limit",
            type=int,
            default=2**30,
            help="bytes of task data kept at most (default 1 GiB)",
        )
        part.add_argument(
            "--reuse",
            action="store_true",
            help="listen with the key and ports of the previous run of this profile (its "
            "connection files, kept at exit with this flag), so that engines and clients "
            "still running find the restarted controller",
        )
        part.add_argument(
            "--bulk-threshold",
            type=int,
            default=BULK_THRESHOLD,
            help="arguments and results of at least this many bytes reach the controller "
            "(and the task database) as their size only, not their data "
            f"(default {BULK_THRESHOLD}; 0: always their data)",
        )
    for part in (start, controller, scheduler):
        part.add_argument(
            "--scheme",
            default="leastload",
            choices=["leastload", "lru", "plainrandom", "twobin", "weighted"],
            help="how load-balanced tasks pick an engine (default leastload)",
        )
        part.add_argument(
            "--hwm",
            type=int,
            default=HWM,
            help=f"load-balanced tasks an engine may hold at once (default {HWM}; 0: no limit)",
        )

    engine = commands.add_parser(
        "engine", help="run one engine in the foreground", description=runs["engine"].__doc__
    )
    engine.add_argument("--file", required=True, help="the cluster's engine connection file")
    engine.add_argument(
        "--reconnect",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="when the controller goes away, wait this long for it to be restarted with "
        "--reuse and register again, keeping the namespace and engine id (default 60; 0: exit)",
    )
    engine.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    engine.set_defaults(run=runs["engine"])
    return parser
