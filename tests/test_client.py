"""The client API on an in-process cluster: views, AsyncResult, flags, control, errors."""

from __future__ import annotations

import gc
import time
import weakref
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from actorcluster import AsyncResult, Client, Cluster, Metadata, interactive
from actorcluster.error import (
    CompositeError,
    NoEnginesRegistered,
    RemoteError,
    TaskAborted,
    UnknownTask,
)
from tests.conftest import wait_until


def test_async_result_is_a_future_with_the_specs_interface(rc: Client) -> None:
    ar = rc[:].apply_async(lambda x: x + 1, 1)
    assert isinstance(ar, Future) and isinstance(ar, AsyncResult)
    assert ar.get(timeout=10) == [2, 2]
    assert ar.ready() and ar.successful() and ar.wait(0)
    assert len(ar.msg_ids) == 2 and len(ar) == 2
    assert [md.engine_id for md in ar.metadata] == [0, 1]
    assert ar.engine_id == [0, 1]
    assert set(rc.history) >= set(ar.msg_ids)
    assert not rc.outstanding & set(ar.msg_ids)
    assert [rc.results[m] for m in ar.msg_ids] == [2, 2]


def test_metadata_has_a_strict_set_of_keys() -> None:
    md = Metadata(msg_id="m")
    md.status = "ok"
    assert md["status"] == "ok" and md.stdout == ""
    with pytest.raises(KeyError, match="'color' is not a metadata key"):
        md["color"] = "red"
    with pytest.raises(AttributeError):
        md.color  # noqa: B018


def test_views_follow_their_block_flag_and_temp_flags(rc: Client) -> None:
    view = rc[:]
    assert isinstance(view.apply(lambda: 1), AsyncResult)
    with view.temp_flags(block=True):
        assert view.apply(lambda: 1) == [1, 1]
    assert view.block is False
    view.set_flags(targets=[1])
    assert view.apply_sync(lambda: 2) == [2]
    with pytest.raises(KeyError, match="unknown flag 'color'"):
        view.set_flags(color="red")


def test_all_is_reevaluated_and_bad_targets_are_named(rc: Client) -> None:
    assert rc.direct_view("all").targets == "all"
    assert len(rc.direct_view()) == 2
    with pytest.raises(IndexError, match="engine 7 is not registered"):
        rc[7].apply_sync(lambda: 0)
    with pytest.raises(TypeError, match="index a Client"):
        rc["zero"]  # type: ignore[index]


def test_interactive_functions_and_remote_and_parallel_decorators(rc: Client) -> None:
    view = rc[:]
    view.block = True
    view["factor"] = 3

    @interactive
    def scale(x: int) -> int:
        return x * factor  # type: ignore[name-defined]  # noqa: F821

    assert view.apply(scale, 2) == [6, 6]

    @view.remote(block=True)
    def where() -> int:
        return 1

    assert where() == [1, 1]

    @view.parallel(block=True)
    def double(xs: list[int]) -> list[int]:
        return [2 * x for x in xs]

    assert double(list(range(6))) == [0, 2, 4, 6, 8, 10]

    @view.parallel(block=True)
    def square(x: int) -> int:
        return x * x

    assert square.map(range(4)) == [0, 1, 4, 9]


def test_map_over_numpy_and_several_sequences(rc: Client) -> None:
    view = rc[:]
    assert view.map_sync(lambda x, y: x * y, range(5), range(5)) == [0, 1, 4, 9, 16]
    out = view.map_async(lambda x: float(x) / 2, np.arange(6))
    assert list(out) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def test_sync_imports_runs_imports_on_every_engine(rc: Client) -> None:
    view = rc[:]
    with view.sync_imports():
        import json
    assert view.apply_sync(lambda: json.dumps([1])) == ["[1]", "[1]"]  # type: ignore[name-defined]


def test_clear_resets_the_namespace(rc: Client) -> None:
    rc[:]["x"] = 1
    rc.clear(block=True)
    with pytest.raises(CompositeError, match="NameError"):
        rc[:].pull("x", block=True)


def test_abort_of_queued_tasks_gives_task_aborted(rc: Client) -> None:
    view = rc[0]
    busy = view.apply_async(lambda: __import__("time").sleep(1.0) or "done")
    queued = view.apply_async(lambda: "never")
    view.abort(queued, block=True)  # control is served while `busy` runs
    with pytest.raises(TaskAborted, match=queued.msg_ids[0]):
        queued.get(10)
    assert busy.get(10) == "done"


def test_wait_and_unknown_msg_ids(rc: Client) -> None:
    ars = [rc[0].apply_async(lambda i=i: i) for i in range(20)]
    assert rc.wait(ars, timeout=10)
    assert rc.wait(timeout=10)
    with pytest.raises(UnknownTask, match="unknown msg_id 'nope'"):
        rc.wait(["nope"])


def test_single_engine_error_is_the_remote_error_itself(rc: Client) -> None:
    with pytest.raises(RemoteError) as info:
        rc[1].execute("raise ValueError('bad value 42')", block=True)
    assert not isinstance(info.value, CompositeError)
    assert info.value.ename == "ValueError" and "bad value 42" in info.value.traceback


def test_composite_error_truncates_its_string_and_prints_tracebacks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    errors = [
        RemoteError("ValueError", f"v{i}", f"Traceback {i}", {"engine_id": i}) for i in range(10)
    ]
    error = CompositeError("one or more exceptions", errors)
    assert "... 6 more exceptions ..." in str(error)
    error.print_tracebacks(2)
    assert capsys.readouterr().out.strip() == "Traceback 2"


def test_wrong_key_fails_to_connect_within_the_timeout(inprocess: Cluster) -> None:
    assert inprocess.client_info is not None
    info = {**inprocess.client_info, "key": "not-the-key"}
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="could not connect to the controller"):
        Client(info=info, timeout=1)
    assert time.monotonic() - started < 5


def test_ids_follow_engines_that_join_later() -> None:
    cluster = Cluster(n=0, mode="inprocess")
    with cluster as rc:
        assert rc.ids == []
        with pytest.raises(NoEnginesRegistered):
            rc[:].apply_sync(lambda: 1)
        cluster.add_engines(1)
        wait_until(lambda: rc.ids == [0], timeout=5)
        assert rc[:].apply_sync(lambda: "joined") == ["joined"]


def test_wait_interactive_shows_progress(rc: Client, capsys: pytest.CaptureFixture[str]) -> None:
    ar = rc[:].apply_async(lambda: 1)
    ar.wait_interactive(interval=0.01, timeout=10)
    assert ar.get(0) == [1, 1]


def test_run_executes_a_file_on_every_engine(rc: Client, tmp_path: Path) -> None:
    script = tmp_path / "setup.py"
    script.write_text("ran = 'yes'\n")
    rc[:].run(str(script), block=True)
    assert rc[:]["ran"] == ["yes", "yes"]


def test_a_finished_task_keeps_only_its_result_and_metadata_in_the_client(rc: Client) -> None:
    # A long session must not keep every AsyncResult (a lock, a condition, callbacks) alive.
    for view, value in ((rc[0], 5), (rc.load_balanced_view(), 6)):
        ar = view.apply_async(abs, -value)
        assert ar.get(timeout=10) == value
        msg_id = ar.msg_ids[0]
        gone = weakref.ref(ar)
        del ar
        gc.collect()
        assert gone() is None
        assert rc.wait([msg_id], timeout=0)  # still known, and finished
        assert rc.results[msg_id] == value and rc.metadata[msg_id]["status"] == "ok"
        assert rc.get_result(msg_id, block=True) == value  # from the client, not the hub
    failed = rc[0].apply_async(lambda: 1 / 0)
    with pytest.raises(RemoteError):
        failed.get(timeout=10)
    msg_id = failed.msg_ids[0]
    del failed
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        rc.get_result(msg_id, block=True)  # the error again, as a finished future
    with pytest.raises(RemoteError):
        rc.get_result([msg_id, rc.history[0]], block=True)
