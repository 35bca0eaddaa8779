"""Actor addresses: `actor://<node>/<name>`.

A node is the `host:port` it listens on, or, for a node that does not listen (a client,
an engine), an id that is reachable only over the connection it opened.
"""

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
        if not sep or not node:
            raise ValueError(f"not an actor address: {address!r} (expected actor://host:port/name)")
        return cls(node, name)

    @staticmethod
    def dialable(node: str) -> bool:
        """Whether `node` is a `host:port` one can connect to."""
        host, colon, port = node.rpartition(":")
        return bool(colon and host and port.isdigit())

    def __str__(self) -> str:
        return f"{_SCHEME}{self.node}/{self.name}"
