"""Dependencies: the Dependency truth table, and functional dependencies on a cluster."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorcluster import Client, Dependency, depend, dependent, require
from actorcluster.error import ImpossibleDependency, InvalidDependency, RemoteError
from tests.conftest import Gate, through_gate

IDS = ["a", "b", "c", "d"]


def _reference(
    deps: set[str], all_: bool, success: bool, failure: bool, completed: set[str], failed: set[str]
) -> tuple[bool, bool]:
    """(met, unreachable), spelled out one dependency at a time."""
    if not deps:
        return True, False
    counts = {d: (d in completed and success) or (d in failed and failure) for d in deps}
    finished_badly = {
        d: (d in completed and not success) or (d in failed and not failure) for d in deps
    }
    if all_:
        return all(counts.values()), any(finished_badly.values())
    return any(counts.values()), all(finished_badly.values())


@given(
    st.sets(st.sampled_from(IDS)),
    st.booleans(),
    st.sampled_from([(True, False), (False, True), (True, True)]),
    st.sets(st.sampled_from(IDS)),
    st.sets(st.sampled_from(IDS)),
)
def test_check_and_unreachable_match_the_truth_table(
    deps: set[str], all_: bool, flags: tuple[bool, bool], completed: set[str], failed: set[str]
) -> None:
    failed = failed - completed  # a task finishes once
    dep = Dependency(deps, all=all_, success=flags[0], failure=flags[1])
    met, unreachable = _reference(deps, all_, *flags, completed, failed)
    assert dep.check(completed, failed) == met
    assert dep.unreachable(completed, failed) == unreachable


def test_dependency_accepts_async_results_and_refuses_junk(rc: Client) -> None:
    ar = rc[0].apply_async(lambda: 1)
    assert Dependency([ar, "x"]) == {ar.msg_ids[0], "x"}
    with pytest.raises(TypeError, match="a dependency must be"):
        Dependency([3.5])
    with pytest.raises(ValueError, match="success=True, failure=True"):
        Dependency(["x"], success=False, failure=False)


def test_require_runs_where_modules_import_and_fails_where_none_do(rc: Client) -> None:
    lview = rc.load_balanced_view()

    @require("json")
    def dumps() -> str:
        return json.dumps([1])  # type: ignore[name-defined]  # noqa: F821

    assert lview.apply_sync(dumps) == "[1]"

    @require("no_such_module_anywhere")
    def impossible() -> None:
        return None

    with pytest.raises(ImpossibleDependency, match="unmet dependencies on every engine"):
        lview.apply_sync(impossible)


def test_depend_and_dependent_pick_the_engines_where_the_check_holds(rc: Client) -> None:
    rc[0]["suitable"], rc[1]["suitable"] = False, True

    def is_suitable() -> bool:
        return bool(suitable)  # type: ignore[name-defined]  # noqa: F821

    @depend(is_suitable)
    def where() -> str:
        return "ran"

    lview = rc.load_balanced_view()
    lview.retries = 0  # an unmet dependency uses no retry
    ars = [lview.apply_async(where) for _ in range(10)]
    assert [ar.get(10) for ar in ars] == ["ran"] * 10
    assert {ar.engine_id for ar in ars} == {1}
    assert lview.apply_sync(dependent(lambda: "also", is_suitable)) == "also"


def _ended(ar: object) -> tuple[object, object]:
    return ar.metadata["started"], ar.metadata["completed"]  # type: ignore[attr-defined]


def test_after_runs_a_task_once_its_dependencies_finished(rc: Client, engine_gate: Gate) -> None:
    lview = rc.load_balanced_view()
    first = [lview.apply_async(through_gate, engine_gate.path) for _ in range(2)]
    for _ in first:
        engine_gate.wait_for_task()  # both running: `then` must wait for them
    with lview.temp_flags(after=first):
        then = lview.apply_async(lambda: "after")
    engine_gate.open()
    assert then.get(10) == "after"
    assert then.metadata["started"] >= max(ar.metadata["completed"] for ar in first)


def test_follow_pins_tasks_to_the_engine_of_their_dependency(rc: Client) -> None:
    lview = rc.load_balanced_view()
    anchor = lview.apply_async(lambda: "anchor")
    anchor.get(10)
    with lview.temp_flags(follow=anchor):
        ars = [lview.apply_async(lambda: 0) for _ in range(10)]
    rc.wait(ars, timeout=10)
    assert {ar.engine_id for ar in ars} == {anchor.engine_id}


def test_after_a_direct_task(rc: Client) -> None:
    direct = rc[0].apply_async(lambda: "direct")
    direct.get(10)
    with rc.load_balanced_view().temp_flags(after=direct, block=True) as lview:
        assert lview.apply(lambda: "then") == "then"


def test_impossible_dependencies_fail_at_once(rc: Client) -> None:
    lview = rc.load_balanced_view()
    with (
        lview.temp_flags(after=["no-such-msg-id"]),
        pytest.raises(InvalidDependency, match="no-such-msg-id"),
    ):
        lview.apply_sync(lambda: 0)
    failed = lview.apply_async(lambda: 1 / 0)
    with pytest.raises(RemoteError):
        failed.get(10)
    with (
        lview.temp_flags(after=failed),
        pytest.raises(ImpossibleDependency, match="finished the wrong way"),
    ):
        lview.apply_sync(lambda: 0)
    on_0, on_1 = rc[0].apply_async(lambda: 0), rc[1].apply_async(lambda: 1)
    rc.wait([on_0, on_1], timeout=10)
    with (
        lview.temp_flags(follow=Dependency([on_0, on_1])),
        pytest.raises(ImpossibleDependency, match="different engines"),
    ):
        lview.apply_sync(lambda: 0)


def test_cleanup_task_runs_only_after_a_failure(rc: Client) -> None:
    lview = rc.load_balanced_view()
    failed = lview.apply_async(lambda: 1 / 0)
    succeeded = lview.apply_async(lambda: "fine")
    with lview.temp_flags(after=Dependency([failed], success=False, failure=True)):
        cleanup = lview.apply_async(lambda: "cleaned up")
    assert cleanup.get(10) == "cleaned up"
    with lview.temp_flags(after=Dependency([succeeded], success=False, failure=True)):
        never = lview.apply_async(lambda: "never")
    with pytest.raises(ImpossibleDependency):
        never.get(10)


def test_depend_on_the_platform_as_in_the_spec(rc: Client) -> None:
    def platform_specific(plat: str) -> bool:
        import sys

        return sys.platform == plat

    @depend(platform_specific, "linux")
    def mactask() -> str:
        return "ran on linux"

    @depend(platform_specific, "no-such-platform")
    def nowhere() -> str:
        return "never"

    lview = rc.load_balanced_view()
    assert lview.apply_sync(mactask) == "ran on linux"
    with pytest.raises(ImpossibleDependency):
        lview.apply_sync(nowhere)
