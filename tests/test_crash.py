"""A controller SIGKILLed in the middle of a burst, then restarted with `--reuse`: the task
database never contradicts what a client received, holds every task and result a client
holds, and no task whose result was delivered runs twice."""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actorcluster import Client
from actorcluster.error import NodeUnreachable
from tests.conftest import ROOT, wait_until
from tests.test_taskdb_durability import ENGINE, Controller

pytestmark = pytest.mark.slow

KILLS = 10
BURST = 40


def counted(path: str, token: str, value: int) -> int:
    """A task: note in `path` that it ran (one line per run), and return `value`."""
    with open(path, "a") as runs:
        runs.write(token + "\n")
    return value


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Controller]:
    """A controller that keeps its database in `tmp_path`, and two engines started on
    their own (they outlive it and wait for it to come back)."""
    controller = Controller(tmp_path, "", 0, "--reuse")
    procs = [
        subprocess.Popen(
            [*ENGINE, str(controller.engine_file), "--reconnect", "120"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    try:
        yield controller
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        controller.kill()


def _submit(rc: Client, i: int, path: str, token: str, last: Any) -> Any:
    """Task `i` of a mixed burst: direct, balanced, balanced with a retry, after another."""
    match i % 4:
        case 0:
            return rc[i % 2].apply_async(counted, path, token, i)
        case 1:
            return rc.load_balanced_view().apply_async(counted, path, token, i)
        case 2:
            view = rc.load_balanced_view()
            view.retries = 1
            return view.apply_async(counted, path, token, i)
    view = rc.load_balanced_view()
    with view.temp_flags(after=[last] if last is not None else []):
        return view.apply_async(counted, path, token, i)


def _engines_back(rc: Client) -> bool:
    try:
        return len(rc.hub_status()["engines"]) == 2
    except Exception:  # noqa: BLE001 - the client reconnects on its next ask
        return False


def test_a_controller_killed_anywhere_in_a_burst_never_contradicts_a_delivered_result(
    engines: Controller, tmp_path: Path
) -> None:
    controller = engines
    chance = random.Random(12)
    with controller.client(2) as rc:
        for kill in range(KILLS):
            runs = tmp_path / f"runs-{kill}"
            at = chance.randrange(BURST)
            futures: dict[str, Any] = {}
            last = None
            for i in range(BURST):
                if i == at:
                    controller.kill()
                token = f"{kill}-{i}"
                futures[token] = last = _submit(rc, i, str(runs), token, last)
            controller = Controller(tmp_path, "", 0, "--reuse")
            wait_until(lambda: _engines_back(rc), 60)
            wait_until(lambda f=futures: all(ar.done() for ar in f.values()), 60)
            ran = Counter(runs.read_text().split()) if runs.exists() else Counter()
            held = {ar.msg_ids[0]: (token, ar) for token, ar in futures.items()}
            records = {
                r["msg_id"]: r
                for r in rc.db_query(
                    {"msg_id": {"$in": list(held)}}, ["completed", "result_content"]
                )
            }
            for msg_id, (token, ar) in held.items():
                error = ar.exception()
                where = f"kill {kill} at {at}, task {token} ({msg_id})"
                if isinstance(error, NodeUnreachable):  # never sent: it never ran
                    assert ran[token] == 0, where
                    continue
                record = records.get(msg_id)
                assert record is not None, f"{where}: not in the database"
                assert record["completed"] is not None, f"{where}: pending in the database"
                status = record["result_content"]["status"]
                if error is None:
                    assert ar.get() == int(token.split("-")[1])
                    assert status == "ok", f"{where}: delivered, recorded {status}"
                    assert ran[token] == 1, f"{where}: delivered, ran {ran[token]} times"
                else:
                    assert status != "ok", f"{where}: failed with {error!r}, recorded ok"
                    assert ran[token] <= 1, f"{where}: ran {ran[token]} times"
    controller.kill()
