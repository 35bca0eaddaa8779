"""Actor addresses: `actor://<node>/<name>`, where a node is the `host:port` it listens on."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Address"]

_SCHEME = "actor://"


class Address(NamedTuple):
    """The node (`host:port`) and name of an actor."""

    node: str
    name: str

    @classmethod
    def parse(cls, address: str) -> Address:
        """Split `actor://host:port/name`.

        Raises:
            ValueError: `address` is not of that form.
        """
        if not isinstance(address, str) or not address.startswith(_SCHEME):
            raise ValueError(f"not an actor address: {address!r} (expected actor://host:port/name)")
        node, sep, name = address[len(_SCHEME) :].partition("/")
        host, colon, port = node.rpartition(":")
        if not sep or not colon or not host or not port.isdigit():
            raise ValueError(f"not an actor address: {address!r} (expected actor://host:port/name)")
        return cls(node, name)

    def __str__(self) -> str:
        return f"{_SCHEME}{self.node}/{self.name}"
