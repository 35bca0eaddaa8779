"""The examples of the spec's multiengine doc, on real engine processes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actorcluster import Client
from actorcluster.error import CompositeError, RemoteError

pytestmark = pytest.mark.slow


def test_engines_are_listed(prc: Client) -> None:
    assert prc.ids == [0, 1]
    assert len(prc) == 2


def test_dictionary_interface_and_functions_see_the_engine_namespace(prc: Client) -> None:
    dview = prc[:]
    dview.block = True
    dview["a"] = 5
    dview["b"] = 10
    assert dview.apply(lambda x: a + b + x, 27) == [42, 42]  # type: ignore[name-defined]  # noqa: F821
    assert dview["a"] == [5, 5]
    assert dview.get("b") == [10, 10]
    dview.update({"c": "speed"})
    assert dview["c"] == ["speed", "speed"]


def test_execute_on_target_subsets(prc: Client) -> None:
    prc[:]["a"], prc[:]["b"] = 1, 2
    prc[0].execute("c = a + b", block=True)
    prc[[1]].execute("c = a - b", block=True)
    assert prc[:]["c"] == [3, -1]


def test_a_single_target_gives_single_values(prc: Client) -> None:
    prc[:]["b"] = 5
    v0 = prc[0]
    assert v0.apply_sync(lambda: b) == 5  # type: ignore[name-defined]  # noqa: F821
    assert v0["b"] == 5
    assert prc[0:1]["b"] == [5]


def test_push_and_pull_with_one_and_many_targets(prc: Client) -> None:
    dview = prc[:]
    dview.push({"a": 1.03234, "b": 3453}, block=True)
    assert dview.pull("a", block=True) == [1.03234, 1.03234]
    assert prc[0].pull("b", block=True) == 3453
    assert dview.pull(("a", "b"), block=True) == [[1.03234, 3453], [1.03234, 3453]]
    ar = dview.pull("a")
    assert ar.get(timeout=10) == [1.03234, 1.03234]


def test_scatter_and_gather(prc: Client) -> None:
    dview = prc[:]
    dview.scatter("a", list(range(16)), block=True)
    assert dview["a"] == [list(range(8)), list(range(8, 16))]
    assert dview.gather("a", block=True) == list(range(16))
    dview.scatter("x", np.arange(64.0), block=True)
    dview.execute("y = x ** 2", block=True)
    np.testing.assert_array_equal(dview.gather("y", block=True), np.arange(64.0) ** 2)


def test_non_blocking_get_with_timeout_raises_timeout_error(prc: Client) -> None:
    dview = prc[:]
    dview.execute("import time", block=True)
    ar = dview.apply_async(lambda t: time.sleep(t) or t, 1.0)  # type: ignore[func-returns-value]
    assert not ar.ready()
    with pytest.raises(TimeoutError):
        ar.get(0.05)
    assert ar.get(10) == [1.0, 1.0]
    assert ar.ready() and ar.successful()


def test_map_equals_the_serial_map(prc: Client) -> None:
    serial = list(map(lambda x: x**10, range(32)))
    assert prc[:].map_sync(lambda x: x**10, range(32)) == serial


def test_composite_error_from_execute(prc: Client) -> None:
    with pytest.raises(CompositeError) as info:
        prc[:].execute("1/0", block=True)
    error = info.value
    assert len(error.elist) == 2
    assert all(e.ename == "ZeroDivisionError" for e in error.elist)
    assert "engine 0" in str(error)
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        error.raise_exception(1)
    ar = prc[:].execute("1/0")
    with pytest.raises(CompositeError):
        ar.get(10)


def test_stdout_and_metadata_of_a_task(prc: Client) -> None:
    ar = prc[0].apply_async(lambda: print("hello from an engine") or 7)  # type: ignore[func-returns-value]
    assert ar.get(10) == 7
    assert ar.stdout == "hello from an engine\n"
    assert ar.engine_id == 0
    assert ar.metadata["status"] == "ok"
    assert ar.started <= ar.completed
    assert ar.wall_time >= 0 and ar.serial_time >= 0 and ar.elapsed >= 0


def test_engine_survives_system_exit_and_keyboard_interrupt(prc: Client) -> None:
    def leave() -> None:
        raise SystemExit(3)

    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(RemoteError, match="SystemExit"):
        prc[0].apply_sync(leave)
    with pytest.raises(RemoteError, match="KeyboardInterrupt") as info:
        prc[0].apply_sync(interrupt)
    assert info.value.engine_info["engine_id"] == 0
    assert prc[0].apply_sync(lambda: "alive") == "alive"


def test_heartbeat_continues_while_user_code_holds_the_cpu(prc: Client) -> None:
    def spin(seconds: float) -> int:
        end, n = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:
            n += 1
        return n

    assert prc[0].apply_sync(spin, 4.0) > 0  # longer than the 3 s heartbeat limit
    assert prc.ids == [0, 1]
