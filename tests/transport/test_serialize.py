"""Serialization of user functions and data: round trips, closures, zero-copy buffers."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
from actorcluster.transport import Payload, deserialize, interactive, serialize
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=100),
)
nested = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(st.text(max_size=5), children, max_size=5),
        st.frozensets(st.integers(), max_size=5),
    ),
    max_leaves=30,
)
dtypes = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.boolean_dtypes(),
    st.just(np.dtype([("x", "<f8"), ("n", "<i4"), ("tag", "S3")])),
)
arrays = hnp.arrays(dtypes, hnp.array_shapes(max_dims=3, max_side=40))


def _through_the_wire(payload: Payload) -> Payload:
    """What a receiver gets: the pickle and each buffer as a separate bytes object."""
    return Payload(bytes(payload.data), tuple(bytes(memoryview(b)) for b in payload.buffers))


@given(nested)
def test_nested_containers_round_trip(value: Any) -> None:
    assert deserialize(_through_the_wire(serialize(value))) == value


@settings(max_examples=60)
@given(arrays)
def test_numpy_arrays_round_trip(array: np.ndarray) -> None:
    back = deserialize(_through_the_wire(serialize(array)))
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    assert back.tobytes() == array.tobytes()  # bitwise: NaNs and structured fields included


@given(st.lists(st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=20))
def test_object_arrays_round_trip(items: list[Any]) -> None:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    back = deserialize(_through_the_wire(serialize(array)))
    assert back.dtype == object and list(back) == items


def test_large_arrays_leave_the_pickle_without_a_copy() -> None:
    array = np.arange(1_000_000, dtype=np.float64)
    payload = serialize({"a": array, "b": [array[:10]]})
    assert len(payload.buffers) == 1
    assert len(payload.data) < 10_000
    assert np.shares_memory(np.frombuffer(payload.buffers[0], dtype=np.float64), array)


def test_received_arrays_are_writable() -> None:
    payload = _through_the_wire(serialize(np.zeros(100_000)))
    received = Payload(payload.data, tuple(bytearray(b) for b in payload.buffers))
    array = deserialize(received)
    array[0] = 1.0
    assert array[0] == 1.0


@given(st.integers(), st.integers())
def test_closures_and_lambdas_round_trip(a: int, b: int) -> None:
    def make_adder(n: int) -> Any:
        def add(x: int) -> int:
            return x + n

        return add

    add_a = deserialize(_through_the_wire(serialize(make_adder(a))))
    times_b = deserialize(_through_the_wire(serialize(lambda x: x * b)))
    assert add_a(b) == a + b
    assert times_b(a) == a * b


def test_functions_by_reference_stay_small() -> None:
    payload = serialize(np.sum)
    assert deserialize(payload) is np.sum
    assert len(payload.data) < 100


def test_interactive_functions_go_by_value() -> None:
    @interactive
    def f(x: int) -> int:
        return x + 1

    data = serialize(f).data
    assert b"dill" in data
    assert deserialize(pickle.loads(pickle.dumps(serialize(f))))(1) == 2
