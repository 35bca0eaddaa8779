"""The public surface of each package is exactly what its `__all__` says."""

from __future__ import annotations

import importlib
import types

import pytest


@pytest.mark.parametrize(
    "name", ["actorcluster", "actorcluster.transport", "actorcluster.actors", "actorcluster.error"]
)
def test_all_is_sorted_and_names_exactly_the_public_objects(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert len(set(exported)) == len(exported)  # ruff (RUF022) keeps it sorted
    public = {
        attr
        for attr, value in vars(module).items()
        if not attr.startswith("_")
        and not isinstance(value, types.ModuleType)
        and getattr(value, "__module__", name).startswith("actorcluster")
        and attr not in {"annotations", "logger"}
    }
    assert public - {"TimeoutError"} <= set(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names {attr!r}, which does not exist"
