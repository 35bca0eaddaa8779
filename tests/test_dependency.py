"""Dependencies: the Dependency truth table, and functional dependencies on a cluster."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorcluster import Client, Dependency, depend, dependent, require
from actorcluster.error import ImpossibleDependency

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
