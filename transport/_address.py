"""Actor addresses: `actor://<node>/<name>`.

A node is the `host:port` it listens on, or, for a node that does not listen (a client,
an engine), an id that is reachable only over the connection it opened.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import NamedTuple

__all__ = ["Address", "listen_toward"]

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


def listen_toward(node: str) -> tuple[str, str | None]:
    """Where to listen so that peers near `node` (a `host:port`) can connect back.

    Returns:
        The `tcp://host:0` endpoint to bind and the host to advertise (None: the bound
        one). Loopback stays on loopback; otherwise every interface is bound and the
        address that routes to `node`'s host is advertised.
    """
    host = node.rpartition(":")[0].strip("[]")
    try:
        if ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
            return "tcp://127.0.0.1:0", None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))  # no packet leaves: this only picks the route
            return "tcp://0.0.0.0:0", str(probe.getsockname()[0])
    except OSError:
        return "tcp://0.0.0.0:0", None


def node_of(endpoint: str, advertise: str | None) -> str:
    """Return `host:port` for a bound `tcp://host:port` endpoint."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    if advertise:
        host = advertise
    elif host in ("0.0.0.0", "*", "[::]"):
        host = socket.gethostname()
    return f"{host}:{port}"
