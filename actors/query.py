"""The Mongo query subset of the task database, compiled once into a matcher.

    {"started": {"$gte": hourago}, "client_uuid": session}     all conditions must hold

Operators: `$in $nin $eq $ne $gt $gte $lt $lte $exists`, and the spec's spellings `$ge`
(which its table documents as `>`) and `$le` (documented as `<`). A plain value means
equality; a field a record lacks counts as None; an order comparison with None or with
a value of another type is false, never an error; `$exists: True` means "is not None".
Anything else is refused with an error naming it: nothing from a query is evaluated.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

from actorcluster.error import ActorClusterError

__all__ = ["BadQuery", "Matcher", "compile_query"]


class BadQuery(ActorClusterError, ValueError):
    """A query uses something outside the supported subset."""


def _ordered(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def test(value: Any, bound: Any) -> bool:
        if value is None or bound is None:
            return False
        try:
            return bool(compare(value, bound))
        except TypeError:
            return False  # other types, or naive against aware datetimes

    return test


def _member(value: Any, options: Any) -> bool:
    return any(value == option for option in options)


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": lambda value, x: bool(value == x),
    "$ne": lambda value, x: bool(value != x),
    "$gt": _ordered(operator.gt),
    "$gte": _ordered(operator.ge),
    "$lt": _ordered(operator.lt),
    "$lte": _ordered(operator.le),
    "$ge": _ordered(operator.gt),  # as the spec's table documents it
    "$le": _ordered(operator.lt),  # idem
    "$in": _member,
    "$nin": lambda value, options: not _member(value, options),
    "$exists": lambda value, wanted: (value is not None) == bool(wanted),
}


class Matcher:
    """A compiled query: call it with a record (a dict) to know whether it matches."""

    def __init__(
        self, query: dict[str, Any], tests: list[tuple[str, Callable[[Any, Any], bool], Any]]
    ) -> None:
        self.query = query
        self._tests = tests
        self._key = repr(sorted(query.items(), key=lambda item: item[0]))

    def __call__(self, value: Mapping[str, Any]) -> bool:
        get = value.get
        return all(test(get(field), argument) for field, test, argument in self._tests)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Matcher) and other._key == self._key

    def __repr__(self) -> str:
        return f"Matcher({self.query!r})"


def compile_query(query: Any) -> Matcher:
    """Compile `query` into a `Matcher`.

    Raises:
        BadQuery: `query` is not a dict, or uses an unsupported operator or argument.
    """
    if not isinstance(query, dict):
        raise BadQuery(
            f"a query must be a dict of field conditions, not {type(query).__name__}: {query!r}"
        )
    tests: list[tuple[str, Callable[[Any, Any], bool], Any]] = []
    for field, condition in query.items():
        if not isinstance(field, str) or field.startswith("$"):
            raise BadQuery(
                f"unsupported top-level key {field!r} (fields only; operators go inside a field)"
            )
        if isinstance(condition, dict) and any(str(k).startswith("$") for k in condition):
            for op, argument in condition.items():
                test = _OPERATORS.get(op)
                if test is None:
                    raise BadQuery(
                        f"unsupported query operator {op!r} on field {field!r} "
                        f"(supported: {', '.join(sorted(_OPERATORS))})"
                    )
                if op in ("$in", "$nin") and not isinstance(
                    argument, list | tuple | set | frozenset
                ):
                    raise BadQuery(f"{op} on field {field!r} needs a list, not {argument!r}")
                tests.append((field, test, argument))
        else:
            tests.append((field, _OPERATORS["$eq"], condition))
    return Matcher(query, tests)
