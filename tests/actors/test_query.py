"""The task database's query matcher against a plain-Python reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from actorcluster.actors.query import BadQuery, compile_query
from hypothesis import given, settings
from hypothesis import strategies as st

FIELDS = ["a", "b", "started"]
NOW = datetime(2026, 11, 21, tzinfo=UTC)
values = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.sampled_from(["x", "y"]),
    st.sampled_from([NOW, NOW + timedelta(hours=1), NOW.replace(tzinfo=None)]),
)
records = st.dictionaries(st.sampled_from(FIELDS), values)
ops = st.sampled_from(
    ["$in", "$nin", "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$ge", "$le", "$exists"]
)


def _argument(op: str) -> st.SearchStrategy[Any]:
    if op in ("$in", "$nin"):
        return st.lists(values, max_size=3)
    if op == "$exists":
        return st.booleans()
    return values


conditions = st.one_of(
    values,  # a plain value: equality
    ops.flatmap(lambda op: _argument(op).map(lambda arg: {op: arg})),
)
queries = st.dictionaries(st.sampled_from(FIELDS), conditions, max_size=3)


def reference(record: dict[str, Any], query: dict[str, Any]) -> bool:
    """The semantics, spelled out one case at a time."""
    for field, condition in query.items():
        value = record.get(field)  # a missing field counts as None
        if not (
            isinstance(condition, dict) and condition and next(iter(condition)).startswith("$")
        ):
            if value != condition:
                return False
            continue
        for op, arg in condition.items():
            if op == "$eq":
                ok = value == arg
            elif op == "$ne":
                ok = value != arg
            elif op == "$in":
                ok = value in arg
            elif op == "$nin":
                ok = value not in arg
            elif op == "$exists":
                ok = (value is not None) if arg else (value is None)
            else:
                if value is None or arg is None:
                    return False
                try:
                    ok = {
                        "$gt": value > arg, "$gte": value >= arg, "$lt": value < arg,
                        "$lte": value <= arg, "$ge": value > arg, "$le": value < arg,
                    }[op]  # fmt: skip
                except TypeError:
                    ok = False
            if not ok:
                return False
    return True


@settings(max_examples=400)
@given(st.lists(records, max_size=8), queries)
def test_the_matcher_agrees_with_the_reference(
    batch: list[dict[str, Any]], query: dict[str, Any]
) -> None:
    matcher = compile_query(query)
    assert [matcher(r) for r in batch] == [reference(r, query) for r in batch]


def test_the_specs_example_queries() -> None:
    hourago = NOW - timedelta(hours=1)
    records = [
        {
            "msg_id": "1",
            "started": NOW,
            "completed": None,
            "client_uuid": "me",
            "engine_uuid": "e3",
        },
        {
            "msg_id": "2",
            "started": NOW - timedelta(hours=2),
            "completed": NOW,
            "client_uuid": "other",
            "engine_uuid": "e4",
        },
        {"msg_id": "3", "started": None, "client_uuid": "me", "engine_uuid": "e1"},
    ]

    def ids(query: dict[str, Any]) -> list[str]:
        matcher = compile_query(query)
        return [r["msg_id"] for r in records if matcher(r)]

    assert ids({"completed": None}) == ["1", "3"]
    assert ids({"started": {"$gte": hourago}, "client_uuid": "me"}) == ["1"]
    assert ids({"started": {"$le": hourago}, "client_uuid": {"$ne": "me"}}) == ["2"]
    assert ids({"engine_uuid": {"$in": ["e3", "e4"]}}) == ["1", "2"]
    assert ids({"completed": {"$ne": None}}) == ["2"]
    assert ids({"started": {"$gt": hourago}}) == ["1"]  # not inverted


@pytest.mark.parametrize("operator", ["$where", "$regex", "$expr", "$or", "$function"])
def test_operators_outside_the_subset_are_refused_by_name(operator: str) -> None:
    with pytest.raises(BadQuery, match=f"'\\{operator}'"):
        compile_query({"a": {operator: "1 == 1"}})


def test_other_malformed_queries_are_refused() -> None:
    with pytest.raises(BadQuery, match="must be a dict"):
        compile_query("msg_id == 'x'")
    with pytest.raises(BadQuery, match="top-level key '\\$or'"):
        compile_query({"$or": [{"a": 1}]})
    with pytest.raises(BadQuery, match="needs a list"):
        compile_query({"a": {"$in": 5}})


def test_equal_queries_compile_to_equal_matchers() -> None:
    assert compile_query({"a": 1, "b": {"$gt": 2}}) == compile_query({"b": {"$gt": 2}, "a": 1})
    assert hash(compile_query({"a": 1})) == hash(compile_query({"a": 1}))
