"""`actorclusterd`: start, inspect and stop clusters, or run one part of one.

actorclusterd start -n 4            a controller and 4 engines, in the background
actorclusterd status                engines, queues, uptime
actorclusterd stop                  stop engines and controller
actorclusterd controller [-n N]     run a controller in the foreground
actorclusterd engine --file F       run one engine that joins the cluster of F
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from actorcluster._cliargs import parser
from actorcluster.error import ActorClusterError, ConnectionFileError
from actorcluster.profile import profile_dir
from actorcluster.transport import (
    Session,
    SocketError,
    load_connection_file,
    new_key,
    write_connection_file,
)

__all__ = ["main"]

logger = logging.getLogger(__name__)


def _files(args: argparse.Namespace) -> tuple[Path, Path, Path, Path]:
    """Return the client file, engine file, pid file and log folder of a profile/cluster."""
    if getattr(args, "dir", None):
        base = Path(args.dir)
        security, log, pid = base, base, base
    else:
        base = profile_dir(args.profile)
        security, log, pid = base / "security", base / "log", base / "pid"
    for folder in (security, log, pid):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    suffix = f"-{args.cluster_id}" if args.cluster_id else ""
    return (
        security / f"actorcluster-client{suffix}.json",
        security / f"actorcluster-engine{suffix}.json",
        pid / f"actorcluster{suffix}.pid",
        log,
    )


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def cmd_controller(args: argparse.Namespace) -> int:
    """Run a controller (and `-n` engines) in the foreground."""
    from actorcluster.launcher import run_controller, spawn_engine

    client_file, engine_file, pid_file, log = _files(args)
    running = _running_pid(pid_file)
    if running is not None and running != os.getpid():
        print(
            f"a cluster is already running for this profile and cluster id (pid {running}); "
            "stop it first (actorclusterd stop) or choose another --cluster-id",
            file=sys.stderr,
        )
        return 1
    pid_file.write_text(f"{os.getpid()}\n")
    _log_to(log / f"controller{'-' + args.cluster_id if args.cluster_id else ''}.log", args.verbose)
    try:
        store = _open_store(args)
    except (ActorClusterError, ValueError, OSError) as e:
        print(f"cannot open the task database: {e}", file=sys.stderr)
        pid_file.unlink(missing_ok=True)
        return 1
    key, ports = new_key(), None
    if args.reuse and engine_file.exists():
        try:
            key, ports = _previous_run(engine_file)
        except (ConnectionFileError, KeyError, ValueError) as e:
            print(f"cannot reuse {engine_file}: {e}", file=sys.stderr)
            pid_file.unlink(missing_ok=True)
            return 1
    session = Session(key.encode())
    try:
        controller = _start_controller(args, session, store, ports)
    except SocketError as e:
        print(
            f"cannot listen on the ports of the previous run ({e}); "
            "start without --reuse to listen on new ones",
            file=sys.stderr,
        )
        pid_file.unlink(missing_ok=True)
        return 1
    write_connection_file(engine_file, controller.engine_info)
    write_connection_file(client_file, controller.client_info)
    engines = [spawn_engine(engine_file, log / f"engine-{i}.log") for i in range(args.n)]
    logger.info("controller up: %s, %d engines starting", controller.client_info["hub"], args.n)
    try:
        run_controller(controller, engines)
    finally:
        kept = () if args.reuse else (client_file, engine_file)
        for path in (*kept, pid_file):
            path.unlink(missing_ok=True)
    return 0


def _previous_run(engine_file: Path) -> tuple[str, dict[str, int]]:
    """The key and ports of the controller that wrote `engine_file`."""
    info = load_connection_file(engine_file)
    ports = {
        role: int(str(info[role]).rpartition(":")[2].split("/")[0])
        for role in ("hub", "notification", "relay", "scheduler", "db", "ping", "pong")
        if info.get(role)
    }
    return str(info["key"]), ports


def _start_controller(
    args: argparse.Namespace, session: Session, store: Any, ports: dict[str, int] | None
) -> Any:
    from actorcluster.actors.controller import Controller

    return Controller(
        session,
        args.ip,
        heartbeat_period=args.heartbeat_period,
        heartbeat_misses=args.heartbeat_misses,
        scheme=args.scheme,
        hwm=args.hwm,
        scheduler_process=args.scheduler_process,
        store=store,
        bulk_threshold=args.bulk_threshold,
        ports=ports,
    )


def _open_store(args: argparse.Namespace) -> Any:
    """The task database the arguments ask for (files in --db-dir, or the profile's db/)."""
    from actorcluster.actors.store import open_store

    folder = Path(args.db_dir) if args.db_dir else None
    if folder is None and args.db == "tinydb":
        base = Path(args.dir) if args.dir else profile_dir(args.profile)
        folder = base / f"db{'-' + args.cluster_id if args.cluster_id else ''}"
    return open_store(
        args.db,
        folder,
        recover=args.recover,
        record_limit=args.db_record_limit,
        size_limit=args.db_size_limit,
    )


def cmd_engine(args: argparse.Namespace) -> int:
    """Run one engine in the foreground."""
    from actorcluster.launcher import run_engine

    _log_to(None, args.verbose)
    try:
        return run_engine(Path(args.file), args.reconnect)
    except ConnectionFileError as e:
        print(e, file=sys.stderr)
        return 2


def cmd_scheduler(args: argparse.Namespace) -> int:
    """Run a task scheduler for the Hub at --hub (the controller starts it; key on stdin)."""
    from actorcluster.launcher import run_scheduler

    _log_to(None, args.verbose)
    return run_scheduler(args.hub, args.ip, args.scheme, args.hwm, args.db, args.port)


def cmd_start(args: argparse.Namespace) -> int:
    """Start a controller with engines in the background; return once they are up."""
    client_file, _, pid_file, log = _files(args)
    running = _running_pid(pid_file)
    if running is not None:
        print(
            f"a cluster is already running for profile {args.profile or 'default'!r}"
            f"{' and cluster id ' + repr(args.cluster_id) if args.cluster_id else ''} (pid {running}); "
            "stop it first (actorclusterd stop) or choose another --cluster-id",
            file=sys.stderr,
        )
        return 1
    client_file.unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "actorcluster.cli",
        "controller",
        "-n",
        str(args.n),
        "--ip",
        args.ip,
        "--scheme",
        args.scheme,
        "--hwm",
        str(args.hwm),
        *(["--scheduler-process"] if args.scheduler_process else []),
        *(["--recover"] if args.recover else []),
        *("--db", args.db, "--db-record-limit", str(args.db_record_limit)),
        *("--db-size-limit", str(args.db_size_limit)),
        *("--bulk-threshold", str(args.bulk_threshold)),
        *(["--reuse"] if args.reuse else []),
    ]
    for flag in ("profile", "cluster_id", "dir", "db_dir"):
        value = getattr(args, flag, None)
        if value:
            command += [f"--{flag.replace('_', '-')}", value]
    with open(log / "controller.out", "ab") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + args.timeout
    while not client_file.exists():
        if proc.poll() is not None:
            print(f"the controller exited with {proc.returncode}; see {log}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            proc.kill()
            print(
                f"the controller did not start within {args.timeout} s; see {log}", file=sys.stderr
            )
            return 1
        time.sleep(0.02)
    from actorcluster.client import Client

    with Client(client_file, timeout=args.timeout) as rc:
        try:
            rc.wait_for_engines(args.n, timeout=args.timeout)
        except TimeoutError as e:
            print(f"{e}; see the logs in {log}", file=sys.stderr)
            return 1
        print(
            f"cluster started: controller pid {proc.pid}, engines {rc.ids}; connect with {client_file}"
        )
    if not args.daemonize:
        try:
            proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print the engines, queues and uptime of a running cluster."""
    from actorcluster.client import Client

    client_file, _, pid_file, _ = _files(args)
    if _running_pid(pid_file) is None:
        print("no cluster is running for this profile and cluster id", file=sys.stderr)
        return 1
    with Client(client_file, timeout=args.timeout) as rc:
        status = rc.hub_status()
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(
        f"controller pid {status['pid']}, up {status['uptime']:.0f} s, {len(status['engines'])} engines"
    )
    for engine_id, info in sorted(status["engines"].items()):
        queue = status["queue"].get(engine_id, {})
        print(
            f"  engine {engine_id}: pid {info['pid']} on {info['hostname']}, "
            f"queue {queue.get('queue', 0)}, completed {queue.get('completed', 0)}"
        )
    print(f"  unassigned tasks: {status['queue'].get('unassigned', 0)}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the engines and the controller of a running cluster."""
    _, _, pid_file, _ = _files(args)
    pid = _running_pid(pid_file)
    if pid is None:
        print("no cluster is running for this profile and cluster id", file=sys.stderr)
        return 1
    os.kill(pid, 15)
    deadline = time.monotonic() + args.timeout
    while _running_pid(pid_file) is not None:
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            pid_file.unlink(missing_ok=True)
            print(
                f"the controller (pid {pid}) did not stop within {args.timeout} s: killed",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.02)
    print(f"cluster stopped (controller pid {pid})")
    return 0


def _log_to(path: Path | None, verbose: bool) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if path is not None:
        handlers.append(logging.FileHandler(path))
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s",
        handlers=handlers,
    )


def main(argv: list[str] | None = None) -> int:
    """Run `actorclusterd`."""
    commands = {
        "start": cmd_start,
        "status": cmd_status,
        "stop": cmd_stop,
        "controller": cmd_controller,
        "scheduler": cmd_scheduler,
        "engine": cmd_engine,
    }
    args = parser(__doc__ or "", commands).parse_args(argv)
    result: Any = args.run(args)
    return int(result)


if __name__ == "__main__":
    sys.exit(main())
